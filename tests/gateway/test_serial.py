"""Serial ingest over a pseudo-terminal with pyserial: ACKs as TX, garbage counted, radio
mismatch warned, bridge unplugged and back without restarting the gateway, and random
bytes on the line (hypothesis) never crash it or block the next good frame."""

from __future__ import annotations

import itertools

import pytest
from gwharness import GatewayThread, make_config
from gwkit import KEY, make_record, uplink, wait_until
from gwptybridge import PtyBridge
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panicgw.ingest.bridge_radio import radio_config
from panicgw.radio import radio_mismatches
from panicgw.store import Store
from panicproto import frames, link

_COUNTERS = itertools.count(0x00100000)




@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serial")
    bridge = PtyBridge(tmp / "bridge-tty", status={"firmware": "sim", "radio": {
        "frequency_mhz": 923.0, "sf": 10, "bw_hz": 125000, "cr": 5, "tx_power": 14}})
    bridge.plug()
    cfg = make_config(tmp, http={"enabled": False}, serial={
        "enabled": True, "port": str(tmp / "bridge-tty"), "ping_interval_s": 0.3,
        "reconnect_max_s": 0.3})
    s = Store(cfg.db_path)
    s.upsert_device(make_record())
    s.close()
    with GatewayThread(cfg) as g:
        assert wait_until(lambda: g.status()["bridge"]["state"] == "connected")
        yield g, bridge
    bridge.unplug()


def _ack_for(bridge: PtyBridge, counter: int, timeout: float = 10.0) -> frames.Downlink:
    def find():
        for raw in bridge.tx:
            d = frames.decode_downlink(raw, KEY)
            if d.counter == counter:
                return d
        return None
    assert wait_until(lambda: find() is not None, timeout), f"no TX for counter {counter:#x}"
    return find()


def test_rx_acked_as_tx_with_path_recorded(rig):
    g, bridge = rig
    bridge.rx(uplink(counter=0x00010001), rssi=-112, snr=-4.5)
    down = _ack_for(bridge, 0x00010001)
    assert down.kind == frames.ACK and down.status == frames.STORED
    ev = g.db(Store.find_event, 0xBEEF, 0x00010001)
    rec = g.db(Store.receptions, ev[0])
    assert rec[0]["path"] == "lora" and rec[0]["rssi"] == -112 and rec[0]["snr"] == -4.5


def test_bridge_on_other_radio_settings_gets_the_gateways(rig):
    """The rig's bridge starts at 923.0 MHz; the gateway pushes its own with CONFIG."""
    g, bridge = rig
    assert wait_until(lambda: g.status()["bridge"]["radio_config"]["state"] == "applied")
    assert bridge.configs[-1] == radio_config(g.cfg.serial)
    assert bridge.configs[-1]["frequency_mhz"] == 921.4
    assert g.status()["bridge"]["radio_mismatches"] == []
    assert radio_mismatches({"sf": 9, "freq_mhz": 921.4, "bw_hz": 125000, "tx_power": 14},
                            g.cfg.serial) == []
    assert "frequency_mhz" in radio_mismatches({"frequency_mhz": 923.0}, g.cfg.serial)[0]


def test_garbage_counted_good_frames_pass(rig):
    g, bridge = rig
    before = g.status()["bridge"]
    bridge.write_raw(b"\x13\x37garbage\xff\xfe" + b"\x00" + b"\x05\x01\x02\x03\x00")
    bridge.write_raw(b"\x00" + bytes(range(1, 200)) * 4 + b"\x00")  # oversize, no zero
    bridge.send(link.RX, b"\x01")  # truncated RX payload
    bridge.rx(b"\x11\x22")  # radio frame too short: pipeline rejects it
    bridge.rx(uplink(counter=0x00010002))
    _ack_for(bridge, 0x00010002)
    after = g.status()
    assert after["bridge"]["garbage_bytes"] > before["garbage_bytes"]
    assert sum(after["bridge"]["link_errors"].values()) > sum(before["link_errors"].values())
    assert after["rejections"].get("link_truncated", 0) >= 1
    assert after["rejections"].get("short", 0) >= 1


def test_unplug_and_back_resumes_without_restart(rig):
    g, bridge = rig
    pid_before = g.status()["pid"]
    connects = g.status()["bridge"]["connects"]
    bridge.unplug()
    assert wait_until(lambda: g.status()["bridge"]["state"] in ("missing", "disconnected"))
    bridge.tx.clear()
    bridge.plug()
    assert wait_until(lambda: g.status()["bridge"]["state"] == "connected"
                 and g.status()["bridge"]["connects"] > connects)
    bridge.rx(uplink(counter=0x00010003))
    assert _ack_for(bridge, 0x00010003).kind == frames.ACK
    assert g.status()["pid"] == pid_before


def test_silent_bridge_is_reconnected(rig):
    g, bridge = rig
    connects = g.status()["bridge"]["connects"]
    bridge.answer_pings = False
    try:
        assert wait_until(lambda: g.status()["bridge"]["connects"] > connects, 10)
    finally:
        bridge.answer_pings = True
    assert wait_until(lambda: g.status()["bridge"]["state"] == "connected")


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(noise=st.binary(max_size=300))
def test_property_noise_then_frame_is_acked(rig, noise):
    g, bridge = rig
    counter = next(_COUNTERS)  # increasing: each frame is new to the replay window
    bridge.tx.clear()
    bridge.write_raw(noise)
    bridge.rx(uplink(kind=frames.HEARTBEAT, counter=counter))
    down = _ack_for(bridge, counter, 5)
    assert down.kind == frames.ACK


def test_auto_detect_prefers_circuitpython_data_channel(monkeypatch):
    from types import SimpleNamespace

    from serial.tools import list_ports

    from panicgw import ports as gwports

    ports = [
        SimpleNamespace(device="/dev/ttyACM0", vid=0x239A, interface="CircuitPython CDC control",
                        description="Feather RP2040", location="1-1:1.0"),
        SimpleNamespace(device="/dev/ttyACM1", vid=0x239A, interface="CircuitPython CDC2 data",
                        description="Feather RP2040", location="1-1:1.2"),
        SimpleNamespace(device="/dev/ttyUSB0", vid=0x0403, interface=None,
                        description="FTDI", location="1-2"),
    ]
    monkeypatch.setattr(list_ports, "comports", lambda: ports)
    assert gwports.bridge_data_port(0x239A)[0] == "/dev/ttyACM1"
    for p in ports:
        p.interface = None  # OS without interface names: the later (data) interface wins
    assert gwports.bridge_data_port(0x239A)[0] == "/dev/ttyACM1"
    assert gwports.bridge_data_port(0x1234)[0] is None


def test_bridge_port_is_never_a_buttons_console_and_never_a_guess(monkeypatch):
    """One rule for the daemon and diag (panicgw.ports): a button plugged into the Pi for
    service, listed first, is not the bridge; two bridges are refused, not guessed."""
    from types import SimpleNamespace

    from serial.tools import list_ports

    from panicgw import ports as gwports
    from panicgw.diag import find_bridge_port

    def port(dev: str, serial: str, loc: str, iface: str) -> SimpleNamespace:
        return SimpleNamespace(device=dev, vid=0x239A, serial_number=serial, location=loc,
                               interface=iface, description="Feather RP2040")

    button = port("/dev/ttyACM0", "B1", "1-1.1:1.0", "CircuitPython CDC control")
    bridge = [port("/dev/ttyACM1", "G1", "1-1.2:1.0", "CircuitPython CDC control"),
              port("/dev/ttyACM2", "G1", "1-1.2:1.2", "CircuitPython CDC2 data")]
    plugged = [button, *bridge]
    monkeypatch.setattr(list_ports, "comports", lambda: plugged)
    assert gwports.bridge_data_port()[0] == "/dev/ttyACM2"
    assert find_bridge_port({"port": "auto", "usb_vid": 0x239A})[0] == "/dev/ttyACM2"

    plugged = [button]
    port_, why = gwports.bridge_data_port()
    assert port_ is None and "no data channel" in why and "--role bridge" in why

    second = [port("/dev/ttyACM3", "G2", "1-1.3:1.0", "CircuitPython CDC control"),
              port("/dev/ttyACM4", "G2", "1-1.3:1.2", "CircuitPython CDC2 data")]
    plugged = [*bridge, *second]
    port_, why = gwports.bridge_data_port()
    assert port_ is None and "2 boards with a data channel" in why and "[serial] port" in why
