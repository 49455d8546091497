"""End to end with the simulated boards running the real firmware: a LoRa button through the
virtual bridge (real bridge firmware on a pty, opened by the gateway with pyserial), a dual
path button whose LoRa and Wi-Fi copies collapse into one stored event, and the bridge
unplugged and plugged back while the gateway keeps running."""

from __future__ import annotations

import pytest
from gwharness import GatewayThread, make_config
from gwkit import make_record, wait_until

from panicgw.store import Store
from panicsim import Air, SimButton, SimClock, start_virtual_bridge

LORA_DEV, WIFI_DEV = 0x5151A001, 0x5151A002
KEY1, KEY2 = bytes(range(16)), bytes(range(16, 32))




@pytest.fixture
def rig(tmp_path):
    air = Air(SimClock(1.0), seed=7)
    bridge = start_virtual_bridge(air, settings={"PB_FREQUENCY_MHZ": "921.4", "PB_SF": 9},
                                  link_dir=tmp_path)
    cfg = make_config(tmp_path, serial={
        "enabled": True, "port": bridge.port_path, "spreading_factor": 9,
        "ping_interval_s": 0.5, "reconnect_max_s": 0.5})
    s = Store(cfg.db_path)
    s.upsert_device(make_record(LORA_DEV, KEY1))
    s.upsert_device(make_record(WIFI_DEV, KEY2))
    s.close()
    with GatewayThread(cfg) as g:
        assert wait_until(lambda: g.status()["bridge"]["state"] == "connected")
        yield g, air, bridge
    bridge.stop()


def test_lora_button_through_real_bridge_firmware(rig):
    g, air, bridge = rig
    st = g.status()["bridge"]
    assert st["bridge"].get("radio", {}).get("sf") == 9 and st["radio_mismatches"] == []
    btn = SimButton(LORA_DEV, KEY1, air=air)
    try:
        btn.start()
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 10)
        btn.alarm()
        assert btn.wait_for_line(lambda ln: "ack: alarm" in ln, 15)
        ev = g.db(Store.recent_events, 10, LORA_DEV)
        alarms = [e for e in ev if e["kind"] == "alarm"]
        assert len(alarms) == 1 and alarms[0]["incident_id"].endswith("-panic")
        rec = g.db(Store.receptions, alarms[0]["id"])
        assert rec[0]["path"] == "lora" and rec[0]["rssi"] is not None
        # unplug the bridge (board off, port gone) and back: reception resumes, same process
        pid = g.status()["pid"]
        connects = g.status()["bridge"]["connects"]
        bridge.unplug()
        assert wait_until(lambda: g.status()["bridge"]["state"] != "connected")
        bridge.replug()
        assert wait_until(lambda: g.status()["bridge"]["state"] == "connected"
                     and g.status()["bridge"]["connects"] > connects, 20)
        btn.test()
        assert btn.wait_for_line(lambda ln: "ack: test" in ln, 20)
        assert g.status()["pid"] == pid
        assert btn.crash is None and bridge.crash is None
    finally:
        btn.stop()


def test_dual_path_button_one_event_both_paths_recorded(rig):
    g, air, _ = rig
    url = f"http://127.0.0.1:{g.gw.http.port}"
    btn = SimButton(WIFI_DEV, KEY2, air=air, board="feather_esp32s3_rfm95_wing",
                    settings={"PB_WIFI_SSID": "shop", "PB_WIFI_PASSWORD": "password1",
                              "PB_GATEWAY_URL": url, "PB_SF": 9},
                    wifi_networks={"shop": "password1"})
    try:
        btn.start()
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 10)
        assert btn.boot_reports()[0]["paths"] == ["lora", "wifi"]
        btn.alarm()
        assert btn.wait_for_line(lambda ln: "ack: alarm" in ln, 15)

        def paths():
            ev = [e for e in g.db(Store.recent_events, 10, WIFI_DEV)
                  if e["kind"] == "alarm"]
            if len(ev) != 1:
                return set()
            return {r["path"] for r in g.db(Store.receptions, ev[0]["id"])}

        assert wait_until(lambda: paths() == {"lora", "wifi"}, 10)
        alarms = [r for r in g.db(Store.outbox_rows)
                  if r["payload"]["device"]["id"] == f"{WIFI_DEV:08X}"]
        assert len(alarms) == 1  # forwarded once, whichever path came first
    finally:
        btn.stop()
