"""The real firmware/button/code.py and firmware/bridge/code.py on the simulated board, on
a virtual clock: simulated time moves only when every board waits, and the tests wait on
conditions, never on the wall clock."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import serial
from simwait import until

from panicproto import frames, link
from panicsim import Air, SimButton, VirtualClock, start_virtual_bridge

# A board stopped (power cut, Ctrl-C, stop()) as the radio library enters asyncio.run()
# leaves that coroutine unstarted, as a reset would; Python warns when it is collected.
pytestmark = pytest.mark.filterwarnings(
    "ignore:coroutine 'RFMSPI.asyncio_.*' was never awaited:RuntimeWarning")
KEY = bytes(range(16))
DEV = 0x12345678


class Host:
    """A minimal gateway on the bridge's pty: acknowledges every valid uplink. The test
    holds the clock while it uses one (``with clock.hold()``): simulated time moves only
    while the host waits (``serve``), so its replies are never late in simulated time."""

    def __init__(self, path: str, clock, ack: bool = True) -> None:
        self.port = serial.Serial(path, timeout=0)  # never blocks: time waits for us
        self.clock = clock
        self.dec = link.Decoder()
        self.ack = ack
        self.uplinks: list = []
        self.msgs: list = []

    def _read(self) -> None:
        for m in self.dec.feed(self.port.read(4096)):
            self.msgs.append(m)
            if m.kind != link.RX:
                continue
            frame, rssi, snr = link.parse_rx(m.payload)
            try:
                up = frames.decode_uplink(frame, KEY)
            except Exception:
                continue
            self.uplinks.append((up, rssi, snr))
            if self.ack:
                down = frames.encode_downlink(KEY, frames.Downlink(frames.ACK, up.device_id,
                                                                   up.counter, frames.STORED))
                self.port.write(link.encode(link.TX, 0, down))

    def serve(self, pred, what: str):
        """Read and answer every 10 ms of simulated time until pred() is truthy."""

        def look():
            self._read()
            return pred()

        return until(self.clock, look, what, step=0.01)

    def request(self, kind: int, seq: int, payload: bytes = b"") -> link.Message:
        n = len(self.msgs)
        self.port.write(link.encode(kind, seq, payload))
        return self.serve(lambda: [m for m in self.msgs[n:] if m.seq == seq
                                   and m.kind != link.RX], f"a reply to {kind}")[0]


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def air(clock):
    return Air(clock, seed=3)


def test_lora_alarm_through_virtual_bridge(air, clock):
    with clock.hold():
        bridge = start_virtual_bridge(air)
        btn = SimButton(DEV, KEY, air=air)
        try:
            _lora_alarm(air, clock, bridge, btn)
        finally:
            btn.stop()
            bridge.stop()


def _lora_alarm(air, clock, bridge, btn):
    host = Host(bridge.port_path, clock)
    assert host.request(link.PING, 9, b"abc").payload == b"abc"
    st = json.loads(host.request(link.STATUS, 10).payload)
    assert st["radio"]["sf"] == 9 and "crc_errors" in st["counters"]
    btn.start()
    assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 10)
    rep = btn.boot_reports()[0]
    assert rep["device_id"] == DEV and rep["epoch"] == 1 and rep["paths"] == ["lora"]
    btn.alarm()
    assert host.serve(lambda: btn.lines("ack: alarm"), "the alarm's ACK at the button")
    alarms = [u for u, _, _ in host.uplinks if u.kind == frames.ALARM]
    assert alarms and alarms[0].device_id == DEV and host.uplinks[0][1] == -90
    # garbage and forgeries on the air: counted by the button, nothing crashes
    for junk in (b"\x00", b"\xff" * 18, bytes(40)):
        air.inject(junk, 921.4, 9)
    clock.sleep(0.5)
    assert btn.crash is None and bridge.crash is None
    # CONFIG: accepted -> STATUS; rejected -> LOG with the reason
    ok = host.request(link.CONFIG, 11, json.dumps({"sf": 10}).encode())
    assert ok.kind == link.STATUS and json.loads(ok.payload)["radio"]["sf"] == 10
    bad = host.request(link.CONFIG, 12, b'{"sf": 99}')
    assert bad.kind == link.LOG and b"sf" in bad.payload
    host.port.write(b"\x00garbage\x01\x02\x00")
    st = json.loads(host.request(link.STATUS, 13).payload)
    assert st["counters"]["link_errors"] and st["counters"]["configs"] == 2
    # unplug / replug: the port comes back at the same path, firmware cold-boots
    host.port.close()
    bridge.unplug()
    bridge.replug()
    host = Host(bridge.port_path, clock)
    assert host.request(link.PING, 14, b"x").payload == b"x"


class _Gateway(BaseHTTPRequestHandler):
    frames_seen: list = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).frames_seen.append((self.path, self.headers["Content-Type"], body))
        if type(self).status != 200:
            self.send_response(type(self).status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        up = frames.decode_uplink(body, KEY)
        out = frames.encode_downlink(KEY, frames.Downlink(frames.ACK, up.device_id, up.counter,
                                                          frames.STORED))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a) -> None:
        pass


@pytest.fixture
def gateway():
    _Gateway.frames_seen = []
    _Gateway.status = 200
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield srv, _Gateway
    srv.shutdown()
    srv.server_close()


def _wifi_settings(srv) -> dict:
    return {"PB_WIFI_SSID": "shop", "PB_WIFI_PASSWORD": "password1",
            "PB_GATEWAY_URL": f"http://127.0.0.1:{srv.server_address[1]}"}


def test_wifi_alarm_with_real_adafruit_requests(gateway):
    srv, handler = gateway
    btn = SimButton(DEV, KEY, board="feather_esp32s3", settings=_wifi_settings(srv),
                    wifi_networks={"shop": "password1"}, clock=VirtualClock())
    try:
        btn.start()
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 10)
        rep = btn.boot_reports()[0]
        assert rep["wifi"] == "ok" and rep["paths"] == ["wifi"] and rep["radio"] == "absent"
        btn.alarm()
        assert btn.wait_for_line(lambda ln: "ack: alarm" in ln and "wifi" in ln, 10)
        path, ctype, body = [f for f in handler.frames_seen
                             if frames.decode_uplink(f[2]).kind == frames.ALARM][0]
        assert path == "/v1/frames" and ctype == "application/octet-stream"
        assert len(body) == 19 and frames.decode_uplink(body, KEY).wifi
    finally:
        btn.stop()


def test_dual_path_same_counter_and_gateway_errors(gateway, air, clock):
    srv, handler = gateway
    handler.status = 503  # gateway refuses: the button keeps retrying on both paths
    btn = SimButton(DEV, KEY, air=air, board="feather_esp32s3_rfm95_wing",
                    settings=_wifi_settings(srv), wifi_networks={"shop": "password1"})
    heard: list = []
    listener = air_listener(air, heard)
    try:
        btn.start()
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 10)
        assert btn.boot_reports()[0]["paths"] == ["lora", "wifi"]
        btn.alarm()

        def alarms() -> tuple[list, list]:
            wifi = [frames.decode_uplink(f[2], KEY) for f in list(handler.frames_seen)]
            lora = [frames.decode_uplink(d, KEY) for d in list(heard)]
            return ([u for u in wifi if u.kind == frames.ALARM],
                    [u for u in lora if u.kind == frames.ALARM])

        until(clock, lambda: min(len(x) for x in alarms()) >= 2, "2 alarms on each path")
        wifi, lora = alarms()
        assert len({u.counter for u in wifi + lora}) == 1
        handler.status = 200
        assert btn.wait_for_line(lambda ln: "ack: alarm" in ln, 15)
        assert btn.crash is None
    finally:
        btn.stop()
        air.detach(listener)


def air_listener(air, out: list):
    class _Ear:
        name = "ear"
        frequency_mhz = 921.4
        spreading_factor = 9
        signal_bandwidth = 125000

        def deliver(self, tx) -> None:
            out.append(tx.data)

    ear = _Ear()
    air.attach(ear)
    return ear


def _alarm_epochs(packets: list) -> set:
    ups = [frames.decode_uplink(d, KEY) for d in list(packets)]
    return {u.counter >> 16 for u in ups if u.kind == frames.ALARM}


def test_power_cuts_never_repeat_counters(air, clock):
    btn = SimButton(DEV, KEY, air=air)
    ear: list = []
    listener = air_listener(air, ear)
    try:
        for boot in range(3):
            btn.start()
            btn.alarm()
            until(clock, lambda n=boot + 1: len(_alarm_epochs(ear)) == n, "the alarm on air")
            btn.power_cut()
        counters = []
        for d in ear:
            up = frames.decode_uplink(d, KEY)
            if up.kind == frames.ALARM and up.counter not in counters:
                counters.append(up.counter)
        assert len(counters) == 3 and len({c >> 16 for c in counters}) == 3
        assert btn.nvm_writes == btn.cold_boots == 3  # one epoch write per cold boot
    finally:
        btn.stop()
        air.detach(listener)


def test_malformed_settings_do_not_crash(air, clock):
    btn = SimButton(DEV, KEY, air=air, settings={"PB_REGION": "AS923-2", "PB_SF": "banana"})
    try:
        btn.start()
        assert btn.wait_for_line(lambda ln: "PANIC-BUTTON ERROR 2" in ln and "PB_SF" in ln, 10)
        btn.press(0.5)
        until(clock, lambda: len([1 for _, on in btn.led_log if on]) >= 2, "blinks")
        assert btn.crash is None and btn._thread.is_alive()  # blinking the error code
    finally:
        btn.stop()
