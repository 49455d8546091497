"""Radio settings: one source of regional defaults, and the gateway setting the bridge
(contract C6; issue 10 points 5 and 6).

- A fresh install agrees with itself: the gateway's [serial] defaults, the bridge firmware's,
  the button's default SF, `panictool provision`'s defaults and deploy/gateway.toml.example
  all come from panicproto.airtime's regional defaults.
- The dwell check uses the 19-byte uplink at the configured bandwidth, and says so.
- The virtual bridge (the real bridge firmware, panicsim) starts with a settings.toml that
  says something else; once `panicgw run` connects, the bridge runs the gateway's settings,
  a button on the region's defaults is heard through it, and `panicgw diag` passes
  bridge.radio.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from gwkit import REPO, make_record, wait_until
from gwproc import GatewayProcess

from panicbridge import config as bridge_config
from panicbutton import settings as button_settings
from panicgw import config
from panicproto import airtime, frames
from panicsim import Air, SimButton, SimClock, start_virtual_bridge
from panictool.cli import app as tool_app

LORA_DEV, KEY = 0x5151C0DE, bytes(range(32, 48))


@pytest.mark.parametrize("name", sorted(airtime.REGIONS))
def test_one_source_of_regional_defaults(name: str) -> None:
    r = airtime.region(name)
    gw = config.from_dict({"serial": {"region": name}}).serial
    assert (gw["frequency_mhz"], gw["spreading_factor"], gw["bandwidth_hz"],
            gw["coding_rate"], gw["tx_power_dbm"]) == (
        r.default_mhz, r.default_sf, r.default_bw_hz, r.default_cr, r.default_tx_power)
    btn = button_settings.parse({"PB_REGION": name})
    assert (btn.frequency_mhz, btn.sf, btn.bandwidth_hz, btn.tx_power) == (
        r.default_mhz, r.default_sf, r.default_bw_hz, r.default_tx_power)


def test_bridge_provision_and_example_defaults_are_the_regions() -> None:
    r = airtime.region(airtime.DEFAULT_REGION)
    assert bridge_config.DEFAULTS == {"frequency_mhz": r.default_mhz, "sf": r.default_sf,
                                      "bw_hz": r.default_bw_hz, "cr": r.default_cr,
                                      "tx_power": r.default_tx_power}
    prov = typer.main.get_command(tool_app).commands["provision"]
    defaults = {p.name: p.default for p in prov.params}
    assert (defaults["region"], defaults["sf"], defaults["tx_power"]) == (
        r.name, r.default_sf, r.default_tx_power)
    example = REPO / "deploy" / "gateway.toml.example"
    cfg = config.load(example)
    assert cfg.serial["spreading_factor"] == r.default_sf == bridge_config.DEFAULTS["sf"]
    # the commented radio lines show the region's values, not a second truth
    shown = dict(re.findall(r"^# (frequency_mhz|spreading_factor|bandwidth_hz|coding_rate|"
                            r"tx_power_dbm) = ([0-9.]+)", example.read_text(), re.M))
    assert {k: float(v) for k, v in shown.items()} == {
        "frequency_mhz": r.default_mhz, "spreading_factor": r.default_sf,
        "bandwidth_hz": r.default_bw_hz, "coding_rate": r.default_cr,
        "tx_power_dbm": r.default_tx_power}


def test_dwell_check_uses_the_uplink_at_the_configured_bandwidth() -> None:
    # 62.5 kHz: a 19-byte uplink takes 370.6 ms at SF9 (allowed), 659 ms at SF10
    ok = config.from_dict({"serial": {"bandwidth_hz": 62500, "spreading_factor": 9}})
    assert ok.serial["spreading_factor"] == 9
    with pytest.raises(config.ConfigError) as e:
        config.from_dict({"serial": {"bandwidth_hz": 62500, "spreading_factor": 10}})
    msg = str(e.value)
    assert "62.5 kHz" in msg and "19-byte uplink" in msg and "max SF9" in msg
    air = airtime.time_on_air_ms(frames.UPLINK_LEN, 10, 62500)
    assert f"{air:.1f} ms" in msg
    with pytest.raises(config.ConfigError, match="bandwidth_hz must be one of"):
        config.from_dict({"serial": {"bandwidth_hz": 100000}})


def _diag(cfg: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", "from panicgw.cli import app; app()", "diag",
                          "-c", str(cfg), "--json", "--only", "bridge"],
                         capture_output=True, text=True, timeout=60)
    return {r["id"]: r for r in json.loads(res.stdout)["results"]}


def test_gateway_sets_a_virtual_bridge_running_other_settings(tmp_path: Path) -> None:
    air = Air(SimClock(1.0), seed=11)
    # the bridge's settings.toml says SF10 at 923.0 MHz; the gateway runs the region's
    bridge = start_virtual_bridge(air, settings={"PB_FREQUENCY_MHZ": "923.0", "PB_SF": 10},
                                  link_dir=tmp_path)
    btn = None
    try:
        assert (bridge.radio.frequency_mhz, bridge.radio.spreading_factor) == (923.0, 10)
        with GatewayProcess(tmp_path, devices=[make_record(LORA_DEV, KEY)],
                            serial={"enabled": True, "port": bridge.port_path,
                                    "ping_interval_s": 0.5}) as gw:
            assert wait_until(lambda: gw.status()["bridge"]["radio_config"]["state"]
                              == "applied", 20), gw.status()["bridge"]
            r = airtime.region(airtime.DEFAULT_REGION)
            assert (bridge.radio.frequency_mhz, bridge.radio.spreading_factor,
                    bridge.radio.signal_bandwidth) == (r.default_mhz, r.default_sf,
                                                       r.default_bw_hz)
            st = gw.status()["bridge"]
            assert st["radio_mismatches"] == [] and st["bridge"]["radio"]["sf"] == r.default_sf
            res = _diag(gw.config)
            assert res["bridge.radio"]["status"] == "PASS", res["bridge.radio"]
            assert res["bridge.reader"]["status"] == "PASS"
            # a button provisioned with the defaults is heard through the bridge
            btn = SimButton(LORA_DEV, KEY, air=air, settings={"PB_REGION": r.name})
            btn.start()
            assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 10)
            btn.alarm()
            assert btn.wait_for_line(lambda ln: "ack: alarm" in ln, 20)
            assert gw.status()["frames"]["stored"] >= 1
    finally:
        if btn is not None:
            btn.stop()
        bridge.stop()
