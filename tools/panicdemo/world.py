"""The demo's parts, all real: the police dispatch console (`panicconsole serve`, its own
process, over HTTPS: dispatch.py), the gateway daemon in its own process, a virtual LoRa
bridge on a pseudo-terminal running the bridge firmware, and simulated buttons running the
button firmware (LoRa over the simulated air, Wi-Fi over real sockets to the gateway's HTTP
ingest).

The air is scripted the way a field test would be: an ACK can be lost, an attacker can jam a
button's frame while recording it, and anybody can transmit forged bytes.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from panicdemo.dispatch import ConsoleDispatch, SetupError
from panicgw import access
from panicgw.access import DeviceRecord, SiteRecord
from panicgw.store.inspect import Inspector, ReadError
from panicproto import frames
from panicsim import Air, SimButton, SimClock, VirtualBridge, start_virtual_bridge
from panicsim.clock import Halted

T = TypeVar("T")

FREQ_MHZ = 921.4
SF = 7  # short airtime so 20+ buttons share one channel within a 30 s run
REGION = "AS923-2"
WIFI_SSID = "toko-wifi"
WIFI_PASSWORD = "demo-password"  # the simulated shop network's, not a secret of the system
SILENT_SUPERVISION_S = 60  # the registry minimum, for the button that goes silent
SUPERVISION_TIME_SCALE = 42.0  # 2 x 60 s + 300 s grace = 420 s -> 10 s in the demo
BRIDGE_MISSING_S = 5  # [serial] missing_trouble_s: bridge trouble (330) after 5 s unplugged

STREETS = ("Jl. Malioboro", "Jl. Kaliurang", "Jl. Parangtritis", "Jl. Solo", "Jl. Magelang",
           "Jl. Gejayan", "Jl. Godean", "Jl. Wates", "Jl. Imogiri", "Jl. Prawirotaman")
SHOPS = ("Toko Sinar Jaya", "Apotek Sehat", "Toko Emas Mulia", "Warung Bu Sri",
         "Konter Pulsa Jaya", "Toko Kelontong Maju", "Bengkel Motor Abadi", "Toko Besi Sentosa",
         "Minimarket Berkah", "Toko Batik Rahayu", "Rumah Makan Padang Sederhana",
         "Toko Elektronik Murni")


def _free_tcp(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# -- the air, scripted ---------------------------------------------------------------------------


@dataclass
class AirFault:
    """One scripted air fault: drop frames matching ``match`` (``count`` of them, or while
    active when ``count`` is None), e.g. an ACK lost to interference, or a jammer."""

    name: str
    match: Callable[[bytes, str], bool]  # (the radio packet, sender name)
    count: int | None = 1
    hits: int = 0


class ScriptedAir(Air):
    """The panicsim air plus scripted losses and eavesdroppers (which hear every frame,
    including the ones the faults keep from everybody else)."""

    def __init__(self, clock: SimClock, **kw: Any) -> None:
        super().__init__(clock, **kw)
        self.faults: list[AirFault] = []
        self.dropped: list[tuple[str, bytes]] = []
        self.recorded: list[tuple[float, str, bytes]] = []  # (wall time, sender, payload)
        self._flock = threading.Lock()

    def add_fault(self, fault: AirFault) -> AirFault:
        with self._flock:
            self.faults.append(fault)
        return fault

    def clear_fault(self, fault: AirFault) -> None:
        with self._flock:
            if fault in self.faults:
                self.faults.remove(fault)

    def transmit(self, sender: Any, data: bytes, frequency_mhz: float, sf: int, bw_hz: int,
                 start: float | None = None) -> float:
        name = getattr(sender, "name", str(sender))
        payload = bytes(data)
        self.recorded.append((time.time(), name, payload))
        del self.recorded[:-500]
        with self._flock:
            for f in self.faults:
                if f.match(payload, name):
                    f.hits += 1
                    if f.count is not None and f.hits >= f.count:
                        self.faults.remove(f)
                    self.dropped.append((f.name, payload))
                    self.stats.sent += 1
                    self.stats.lost += 1
                    return self.airtime_s(len(data), sf, bw_hz)
        return super().transmit(sender, data, frequency_mhz, sf, bw_hz, start)


def uplink_from(device_id: int, kind: int | None = None) -> Callable[[bytes, str], bool]:
    """Matcher for uplinks of one device (optionally one type)."""
    def match(p: bytes, sender: str) -> bool:
        if len(p) != 19 or p[0] >> 4 != 1:
            return False
        if kind is not None and p[0] & 0x0F != kind:
            return False
        return struct.unpack(">I", p[1:5])[0] == device_id
    return match


def ack_to(device_id: int) -> Callable[[bytes, str], bool]:
    """Matcher for the next ACK the bridge transmits to one device."""
    def match(p: bytes, sender: str) -> bool:
        return (len(p) == 18 and p[0] & 0x0F == frames.ACK
                and struct.unpack(">I", p[1:5])[0] == device_id)
    return match


# -- buttons ---------------------------------------------------------------------------------------


class DemoButton(SimButton):
    """A SimButton whose console lines carry wall-clock times (press -> dispatch latency)."""

    def __init__(self, *a: Any, role: str = "lora", **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.role = role
        self.stamped: list[tuple[float, str]] = []

    def say(self, text: str) -> None:
        self.stamped.append((time.time(), text))
        super().say(text)

    def presses(self) -> list[tuple[float, str, int]]:
        """(time, kind, counter) of every press the firmware recognised."""
        out = []
        for t, ln in list(self.stamped):
            if ln.startswith("PANIC-BUTTON press: ") and "counter=" in ln:
                kind = ln[len("PANIC-BUTTON press: "):].split()[0]
                try:
                    out.append((t, kind, int(ln.rsplit("counter=", 1)[1])))
                except ValueError:
                    continue
        return out

    def acks(self, kind: str) -> list[str]:
        return [ln for _, ln in list(self.stamped) if ln.startswith(f"PANIC-BUTTON ack: {kind}")]


def _quiet_sim_halts() -> None:
    """A simulated board halted in deep sleep unwinds with panicsim's Halted: that is the
    simulator stopping a board, not an error worth a traceback on the demo's terminal."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not None and issubclass(args.exc_type, Halted):
            return
        previous(args)

    threading.excepthook = hook


# -- the world ------------------------------------------------------------------------------


@dataclass
class World:
    """Everything the scenario acts on. ``start()`` brings it up, ``stop()`` tears it down."""

    n_lora: int = 20
    n_wifi: int = 2
    seed: int | None = None
    keep: bool = False
    on_log: Callable[[str, str], None] = lambda text, style: None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="panicgw-demo-")))
    gateway_id: str = "gw-demo"

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.clock = SimClock(1.0)
        self.air = ScriptedAir(self.clock, seed=self.rng.randrange(1 << 30))
        self.records: list[DeviceRecord] = []
        self.buttons: list[DemoButton] = []
        self.by_id: dict[int, DemoButton] = {}
        self.bridge: VirtualBridge | None = None
        self.dispatch: ConsoleDispatch | None = None
        self.gateway: subprocess.Popen[bytes] | None = None
        self.status_port: int | None = None
        self.http_port: int | None = None
        self.mqtt_broker: bool = False
        self.started_at = time.time()
        self._gw_log: Any = None

    # -- paths ------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gateway.db"

    @property
    def gateway_log(self) -> Path:
        return self.workdir / "gateway.log"

    # -- registry ---------------------------------------------------------------------------
    def _records(self) -> list[DeviceRecord]:
        used: set[int] = set()
        out = []
        total = self.n_lora + self.n_wifi
        for i in range(total):
            dev = self.rng.randrange(0x10000000, 0xFFFFFFFF)
            while dev in used:
                dev = self.rng.randrange(0x10000000, 0xFFFFFFFF)
            used.add(dev)
            wifi = i >= self.n_lora
            shop = SHOPS[i % len(SHOPS)] + (f" {i // len(SHOPS) + 1}" if i >= len(SHOPS) else "")
            site = SiteRecord(
                name=shop, kind="home" if i % 7 == 6 else "shop",
                address=f"{STREETS[i % len(STREETS)]} No. {self.rng.randrange(1, 200)}, "
                        "Yogyakarta",
                lat=round(-7.7956 + self.rng.uniform(-0.03, 0.03), 6),
                lon=round(110.3695 + self.rng.uniform(-0.03, 0.03), 6),
                contact=f"Pemilik {i + 1}", phone=f"+62 812 {self.rng.randrange(1000, 9999)} "
                f"{self.rng.randrange(1000, 9999)}")
            out.append(DeviceRecord(
                device_id=dev, key=secrets.token_bytes(16), site=site,
                label=f"{'WF' if wifi else 'LR'}-{i + 1:02d} counter",
                paths=["lora", "wifi"] if wifi else ["lora"],
                supervision_s=3600, firmware="0.1.0"))
        return out

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        _quiet_sim_halts()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.mqtt_broker = _free_tcp("127.0.0.1", 1883)
        self.on_log("MQTT broker on 127.0.0.1:1883: " + (
            "found, gateway publishes status/events" if self.mqtt_broker
            else "none answering, MQTT off (never needed for alarms)"), "dim")
        self.records = self._records()
        self.records[self.silent_index].supervision_s = SILENT_SUPERVISION_S
        access.write_export(self.workdir / "registry.json", self.records)
        store = access.Store(self.db_path)  # created here, as the daemon would at its start
        try:
            store.upsert_devices(self.records)
        finally:
            store.close()
        self.on_log(f"registered {len(self.records)} buttons in {self.db_path}", "dim")

        token, secret = secrets.token_hex(16), secrets.token_hex(32)
        self.dispatch = ConsoleDispatch(self.workdir, token, secret)
        self.dispatch.start()
        self.on_log(f"dispatch console on {self.dispatch.url} (sign in as demo / "
                    f"{self.dispatch.password}; its certificate is made for this run, so the "
                    "browser warns)", "bold")

        self.bridge = start_virtual_bridge(
            self.air, settings={"PB_FREQUENCY_MHZ": str(FREQ_MHZ), "PB_SF": SF},
            link_dir=str(self.workdir))
        self.on_log(f"virtual LoRa bridge (real firmware) on {self.bridge.port_path}", "dim")

        cfg = self.workdir / "gateway.toml"
        cfg.write_text(self._config(token, secret))
        os.chmod(cfg, 0o600)
        self._start_gateway(cfg)
        self._start_buttons()

    def _config(self, token: str, secret: str) -> str:
        return f"""# written by `panicdemo`
[gateway]
id = "{self.gateway_id}"
data_dir = "{self.data_dir}"
log_format = "json"

[serial]
port = "{self.bridge.port_path if self.bridge else 'auto'}"
region = "{REGION}"
frequency_mhz = {FREQ_MHZ}
spreading_factor = {SF}
ping_interval_s = 0.5
reconnect_max_s = 0.5
missing_trouble_s = {BRIDGE_MISSING_S}

[http]
host = "127.0.0.1"
port = 0
rate_per_s = 100.0  # every simulated Wi-Fi button shares 127.0.0.1
rate_burst = 200

[status]
host = "127.0.0.1"
port = 0

[dispatch]
url = "{self.dispatch.events_url if self.dispatch else ''}"
ca_file = "{self.dispatch.cert if self.dispatch else ''}"
token = "{token}"
secret = "{secret}"
timeout_s = 5.0

[mqtt]
enabled = {"true" if self.mqtt_broker else "false"}
host = "127.0.0.1"
port = 1883
"""

    def _start_gateway(self, cfg: Path) -> None:
        self._gw_log = open(self.gateway_log, "wb")  # noqa: SIM115 (closed in stop())
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "panicdemo.gateway", "--config", str(cfg),
             "--time-scale", str(SUPERVISION_TIME_SCALE)],
            stdout=self._gw_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        runtime = self.data_dir / "runtime.json"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.gateway.poll() is not None:
                raise SetupError(f"the gateway exited with code {self.gateway.returncode}; "
                                 f"see {self.gateway_log}")
            try:
                info = json.loads(runtime.read_text())
            except (OSError, ValueError):
                time.sleep(0.1)
                continue
            if info.get("status_port") and info.get("http_port"):
                self.status_port, self.http_port = info["status_port"], info["http_port"]
                break
            time.sleep(0.1)
        else:
            raise SetupError(f"the gateway did not come up within 20 s; see {self.gateway_log}")
        while time.monotonic() < deadline:
            st = self.status()
            if st and st.get("bridge", {}).get("state") == "connected":
                break
            time.sleep(0.1)
        else:
            raise SetupError("the gateway did not connect to the virtual bridge; see "
                             f"{self.gateway_log}")
        self.on_log(f"gateway {self.gateway_id} running (pid {self.gateway.pid}, HTTP ingest "
                    f":{self.http_port}, status :{self.status_port})", "dim")

    def _start_buttons(self) -> None:
        for rec in self.records:
            wifi = "wifi" in rec.paths
            settings: dict[str, Any] = {"PB_REGION": REGION, "PB_FREQUENCY_MHZ": str(FREQ_MHZ),
                                        "PB_SF": SF, "PB_SF_MAX": SF,
                                        "PB_SUPERVISION_S": rec.supervision_s}
            if wifi:
                settings.update({"PB_WIFI_SSID": WIFI_SSID, "PB_WIFI_PASSWORD": WIFI_PASSWORD,
                                 "PB_GATEWAY_URL": f"http://127.0.0.1:{self.http_port}"})
            b = DemoButton(rec.device_id, rec.key, air=self.air,
                           board="feather_esp32s3_rfm95_wing" if wifi else "feather_rp2040_rfm95",
                           settings=settings,
                           wifi_networks={WIFI_SSID: WIFI_PASSWORD} if wifi else None,
                           name=rec.label.split()[0], role="wifi" if wifi else "lora")
            self.buttons.append(b)
            self.by_id[rec.device_id] = b
        self.on_log(f"{self.n_lora} LoRa buttons + {self.n_wifi} Wi-Fi/LoRa buttons running "
                    "the real firmware", "dim")

    # -- roles the scenario uses --------------------------------------------------------------
    @property
    def silent_index(self) -> int:
        return 1

    def lora(self, i: int) -> DemoButton:
        return self.buttons[i]

    def wifi(self, i: int) -> DemoButton:
        return self.buttons[self.n_lora + i]

    # -- observing --------------------------------------------------------------------------
    def status(self) -> dict[str, Any] | None:
        """The gateway's ``GET /v1/status`` (None when it does not answer)."""
        if not self.status_port:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/v1/status",
                                        timeout=2) as r:
                doc = json.loads(r.read())
            return doc if isinstance(doc, dict) else None
        except (OSError, ValueError):
            return None

    def inspect(self, question: Callable[[Inspector], T], default: T) -> T:
        """Ask the gateway's database (read-only; WAL lets us read while it writes);
        ``default`` when it cannot be read."""
        try:
            db = Inspector.open(self.db_path)
        except (access.StoreError, ReadError):
            return default
        try:
            return question(db)
        except ReadError:
            return default
        finally:
            db.close()

    # -- teardown ---------------------------------------------------------------------------
    def stop_gateway(self) -> int | None:
        """SIGTERM (graceful: in-flight frames stored and acknowledged), then wait."""
        gw = self.gateway
        if gw is None:
            return None
        if gw.poll() is None:
            gw.send_signal(signal.SIGTERM)
            try:
                gw.wait(15)
            except subprocess.TimeoutExpired:
                gw.kill()
                gw.wait(5)
        return gw.returncode

    def stop(self) -> None:
        for b in self.buttons:
            b.stop(timeout=2)
        if self.bridge is not None:
            self.bridge.stop(timeout=2)
        self.stop_gateway()
        if self._gw_log is not None:
            self._gw_log.close()
        if self.dispatch is not None:
            self.dispatch.stop()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
