"""The flashed firmware on the simulated board, as in the field: exact packets on air
through the real adafruit_rfm library, DELIVERED from a gateway, a re-provisioned
supervision interval, and a simulator that is no more forgiving than a board. Simulated
time is virtual (panicsim.VirtualClock): the tests wait on conditions, not the wall clock."""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import serial
from simwait import until

from panicbutton import feedback, nvmstore
from panicimage import manifest
from panicproto import airtime, frames, link
from panicsim import Air, SimButton, VirtualBridge, VirtualClock, start_virtual_bridge

# A board stopped (power cut, Ctrl-C, stop()) as the radio library enters asyncio.run()
# leaves that coroutine unstarted, as a reset would; Python warns when it is collected.
pytestmark = pytest.mark.filterwarnings(
    "ignore:coroutine 'RFMSPI.asyncio_.*' was never awaited:RuntimeWarning")
KEY = bytes(range(16))
DEV = 0x12345678
BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from drivefakes import make_circuitpy  # noqa: E402


class RecordingAir(Air):
    """The air, also noting each packet's length, SF and airtime."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.packets: list[tuple[str, bytes, int, float]] = []

    def transmit(self, sender, data, frequency_mhz, sf, bw_hz, start=None):
        dur = super().transmit(sender, data, frequency_mhz, sf, bw_hz, start)
        self.packets.append((getattr(sender, "name", str(sender)), bytes(data), sf, dur))
        return dur


def test_packets_on_air_are_the_frames_and_reception_values_reach_both_ends():
    clock = VirtualClock()
    air = RecordingAir(clock, seed=4, rssi=-104.0, snr=-7.25)
    with clock.hold():  # the test serves the bridge's port: time moves only as it waits
        bridge = start_virtual_bridge(air)
        btn = SimButton(DEV, KEY, air=air)
        port = serial.Serial(bridge.port_path, timeout=0)
        try:
            _packets_on_air(clock, air, bridge, btn, port)
        finally:
            port.close()
            btn.stop()
            bridge.stop()


def _packets_on_air(clock, air, bridge, btn, port):
    dec = link.Decoder()
    rx: list = []
    downs: list[bytes] = []
    btn.start()
    assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 10)
    btn.alarm()

    def serve():
        for m in dec.feed(port.read(4096)):
            if m.kind != link.RX:
                continue
            frame, rssi, snr = link.parse_rx(m.payload)
            rx.append((frame, rssi, snr))
            up = frames.decode_uplink(frame, KEY)
            down = frames.encode_downlink(KEY, frames.Downlink(
                frames.ACK, up.device_id, up.counter, frames.STORED))
            downs.append(down)
            port.write(link.encode(link.TX, 1, down))
        return btn.lines("ack: alarm")

    line = until(clock, serve, "the alarm's ACK at the button", step=0.01)[0]
    # Uplinks: exactly the 19-byte frame; the bridge's RX carries the chip's RSSI/SNR.
    assert rx and all(len(f) == frames.UPLINK_LEN for f, _, _ in rx)
    assert all(r == -104 and s == -7.25 for _, r, s in rx)
    ups = [p for p in air.packets if p[0] == btn.name]
    assert ups and all(len(d) == 19 for _, d, _, _ in ups)
    assert [d for _, d, _, _ in ups] == [p for _, _, p in btn.radio.sent]
    # Downlinks: the 18-byte frame the gateway handed the bridge, nothing added.
    tx = [p for p in air.packets if p[0] == bridge.name]
    assert tx and all(len(d) == frames.DOWNLINK_LEN for _, d, _, _ in tx)
    assert tx[0][1] == downs[0]
    for _, d, sf, dur in ups + tx:  # airtime of the real on-air length
        assert dur == pytest.approx(airtime.time_on_air_ms(len(d), sf) / 1000, abs=1e-9)
    # C2: the button's line carries the downlink as received and its reception.
    up = frames.decode_uplink(rx[0][0], KEY)
    assert line == (f"PANIC-BUTTON ack: alarm counter={up.counter} status=1 via lora "
                    f"rssi=-104 snr=-7.2 sf=9 down={downs[0].hex()}")
    port.write(link.encode(link.STATUS, 77, b""))
    st = until(clock, lambda: [json.loads(m.payload) for m in dec.feed(port.read(4096))
                               if m.kind == link.STATUS and m.seq == 77], "STATUS",
               step=0.01)[0]
    assert st["counters"]["rx"] >= 1
    # Noise floor: the chip's current RSSI (air.noise_dbm -120 +- 2), not -104.
    assert st["noise_floor_dbm"] is not None and -123 <= st["noise_floor_dbm"] <= -117


class _Gateway(BaseHTTPRequestHandler):
    answer = staticmethod(lambda n: frames.STORED)
    alarms: list = []  # (simulated time, uplink)
    clock: VirtualClock

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        up = frames.decode_uplink(body, KEY)
        status = frames.STORED
        if up.kind == frames.ALARM:
            type(self).alarms.append((type(self).clock.now(), up))
            status = type(self).answer(len(type(self).alarms) - 1)
        out = frames.encode_downlink(KEY, frames.Downlink(frames.ACK, up.device_id,
                                                          up.counter, status))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a) -> None:
        pass


def _police_pattern_played(btn, after: float) -> bool:
    """Three short flashes with long gaps (feedback.POLICE_NOTIFIED) in the LED log."""
    log = [(t, on) for t, on in btn.led_log if t >= after]
    for i in range(len(log) - 5):
        w = log[i:i + 6]
        if [on for _, on in w] != [True, False] * 3:
            continue
        on_ms = [(w[k + 1][0] - w[k][0]) * 1000 for k in (0, 2, 4)]
        gap_ms = [(w[k + 1][0] - w[k][0]) * 1000 for k in (1, 3)]
        if all(30 <= x <= 200 for x in on_ms) and all(500 <= x <= 1000 for x in gap_ms):
            return True
    return False


@pytest.mark.parametrize("behaviour", ["stored_then_delivered", "stored_forever",
                                       "delivered_first"])
def test_delivered_over_wifi_on_the_simulated_board(behaviour: str):
    answers = {"stored_then_delivered": lambda n: frames.STORED if n < 2 else frames.DELIVERED,
               "stored_forever": lambda n: frames.STORED,
               "delivered_first": lambda n: frames.DELIVERED}
    clock = VirtualClock()
    _Gateway.answer = staticmethod(answers[behaviour])
    _Gateway.alarms = []
    _Gateway.clock = clock
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    btn = SimButton(DEV, KEY, board="feather_esp32s3", clock=clock,
                    settings={"PB_WIFI_SSID": "shop", "PB_WIFI_PASSWORD": "password1",
                              "PB_GATEWAY_URL": f"http://127.0.0.1:{srv.server_address[1]}"},
                    wifi_networks={"shop": "password1"})
    try:
        btn.start()
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 10)
        btn.alarm()
        # Until the gateway said DELIVERED or the button stopped asking (10 minutes).
        until(clock, lambda: btn.lines("stopped asking") or btn.lines("status=2"),
              "DELIVERED or the end of asking", step=1.0)
        clock.sleep(3)  # a pattern, if any, plays out
        stored_at = _Gateway.alarms[0][0]  # the first request's answer
        ups = [u for _, u in _Gateway.alarms]
        assert len({u.counter for u in ups}) == 1 and btn.crash is None
        assert [u.attempt for u in ups] == list(range(len(ups)))
        delivered = btn.lines("status=2 via wifi")
        if behaviour == "stored_forever":
            assert len(ups) == 8 and not delivered  # the alarm and 7 requests, then silence
            assert btn.lines("delivery not confirmed") and btn.lines("stopped asking")
            assert not _police_pattern_played(btn, 0)
        elif behaviour == "stored_then_delivered":
            assert len(ups) == 3 and len(delivered) == 1
            assert _police_pattern_played(btn, stored_at)
        else:
            assert len(ups) == 1 and len(delivered) == 1
            assert _police_pattern_played(btn, 0)
        assert feedback.POLICE_NOTIFIED == (60, 700, 60, 700, 60)
    finally:
        btn.stop()
        srv.shutdown()
        srv.server_close()


def _provision(cp: Path, port: str, export: Path, supervision: int, force: bool, tmp: Path):
    cmd = [str(BIN / "panictool"), "provision", "--site-name", "Toko Emas", "--kind", "shop",
           "--address", "Jl. Malioboro 52", "--lat", "-7.79", "--lon", "110.37",
           "--export", str(export), "--drive", str(cp), "--port", port, "--label-dir",
           str(tmp / "labels"), "--supervision", str(supervision), "--no-qr", "--json"]
    r = subprocess.run(cmd + (["--force"] if force else []), capture_output=True, text=True,
                       timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr


def test_reprovisioned_supervision_interval_applies_after_the_reload(tmp_path: Path):
    """Provisioned with 3600 s, the button heartbeats and deep-sleeps (its schedule saved in
    sleep memory); re-provisioned with --supervision 60 (settings.toml rewritten as
    `panictool provision` writes it, then its soft reload), it heartbeats within 60 s."""
    clock = VirtualClock()
    air = Air(clock, seed=9)
    cp = make_circuitpy(tmp_path / "CIRCUITPY")
    btn = SimButton(0, bytes(16), air=air, provisioned=False, drive=cp, name="kasir")
    btn.flash()
    heard: list = []

    class _Ear:
        name = "ear"
        frequency_mhz = 921.4
        spreading_factor = 9
        signal_bandwidth = 125000

        def deliver(self, tx) -> None:
            heard.append((tx.start, tx.data))

    air.attach(_Ear())
    usb = btn.usb_console(link_dir=tmp_path)
    try:
        btn.start()
        assert btn.wait_for_line(lambda ln: "PANIC-BUTTON ERROR" in ln, 15)
        export = tmp_path / "today.json"
        _provision(cp, usb.path, export, 3600, False, tmp_path)
        # The first heartbeat goes out (nobody answers: 3 attempts), then the button deep
        # sleeps with the rest of its hour saved (sleep memory 16: b"HB", wall, left).
        until(clock, lambda: bytes(btn.sleep_memory[16:18]) == b"HB"
              and struct.unpack(">I", bytes(btn.sleep_memory[22:26]))[0] > 600,
              "the first heartbeat, then deep sleep with the hour's schedule saved")
        runs = len(btn.boot_log)
        _provision(cp, usb.path, export, 60, True, tmp_path)
        assert "PB_SUPERVISION_S = 60" in (cp / "settings.toml").read_text()
        dev, key = nvmstore.read_identity(btn.nvm.data)
        reload_at = [t for t, why in btn.boot_log[runs:] if why == "SOFTWARE"][-1]

        def beat():
            for t, d in list(heard):
                try:
                    up = frames.decode_uplink(d, key)
                except Exception:
                    continue
                if up.kind == frames.HEARTBEAT and up.device_id == dev and t >= reload_at:
                    return t
            return None

        t = until(clock, beat, "a heartbeat after the reload")
        assert t - reload_at <= 60, btn.console[-5:]
        assert btn.boot_reports()[-1]["settings"]["supervision_s"] == 60
    finally:
        btn.stop()


def test_the_simulator_runs_only_the_flashed_tree(tmp_path: Path):
    """Today's bug, as it was: the bridge glue imported panicbutton.boards, which the bridge
    manifest did not ship; the old simulator found it among the host's modules. Now the
    board's imports come from its tree and its built-ins only."""
    assert importlib.util.find_spec("panicbutton.boards") is not None  # the host has it
    tree = tmp_path / "CIRCUITPY"
    manifest.write_tree("bridge", tree)
    glue = tree / "hal_bridge.py"
    glue.write_text(glue.read_text().replace(
        "from panicbridge.boards import PROFILE\n",
        "from panicbutton import boards\nPROFILE = boards.PROFILES['feather_rp2040_rfm95']\n"))
    b = VirtualBridge(Air(VirtualClock()), firmware_dir=tree)
    try:
        b.start()
        assert b.wait_for_line(lambda ln: "ImportError" in ln, 10), b.console
        assert b.crash and "no module named 'panicbutton'" in b.crash
        assert not [ln for ln in b.console if ln.startswith("PANIC-BRIDGE {")]
    finally:
        b.stop()
    # A button runs exactly the manifest's files, and imports nothing from elsewhere.
    btn = SimButton(DEV, KEY, air=Air(VirtualClock()))
    try:
        btn.start()
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 10)
        dests = {e.dest for e in manifest.build("button")}
        assert btn.imported and set(btn.imported) <= dests
        assert "lib/adafruit_rfm/rfm9x.py" in btn.imported
        assert "lib/asyncio/core.py" in btn.imported
    finally:
        btn.stop()
