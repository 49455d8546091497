"""The technician fixing a wrong bridge radio with the command diag names (issue 10.5,
contract C6).

A bridge comes to the Pi with another site's settings.toml (923.2 MHz, SF10, where this
gateway's [serial] is the AS923-2 defaults, 921.4 MHz and SF9) while the gateway is
stopped. The technician runs `panicgw diag` as docs/diagnostics.md writes it: it FAILs
`bridge.radio`, naming both values, and its hint names the command that fixes it. The
technician runs exactly that command (the first `sudo ...` the hint quotes, from the
commands a technician on the Pi has; a hint naming anything else fails the test), nobody
edits the bridge's settings.toml, and diag passes. Then a shop's button, on the gateway's
settings, raises an alarm: it is ACKed over LoRa (the button's signed ACK line) and
dispatch receives it as an alarm.
"""

from __future__ import annotations

import json
import re
import shlex

from journeykit import GATEWAY_DOC, ROOT, RSSI, SNR, Gateway, wait_for
from typer.testing import CliRunner

from panicgw import registry
from panicgw.cli import app as gw_app
from panicproto import airtime
from panicsim import SimButton

WRONG = {"PB_FREQUENCY_MHZ": "923.2", "PB_SF": 10}  # another site's bridge settings
DEV, KEY = 0x7EC4A1C0, bytes(range(48, 64))


def diag_command() -> str:
    """The diag command docs/diagnostics.md gives first (on the Pi, as its service user)."""
    text = (ROOT / "docs" / "diagnostics.md").read_text()
    body = text.split("## `panicgw diag`", 1)[1]
    fenced = body.split("```", 2)[1]
    first = [ln.split("  #")[0].strip() for ln in fenced.splitlines()
             if "panicgw diag" in ln][0]
    assert first == "sudo -u panicgw panicgw diag -c /etc/panicgw/gateway.toml", first
    return first


def run_diag(gw: Gateway, cmd: str) -> dict:
    argv = [str(gw.config) if a == "/etc/panicgw/gateway.toml" else a
            for a in shlex.split(cmd)[4:]]  # "sudo -u panicgw panicgw": the service user
    r = CliRunner().invoke(gw_app, [*argv, "--json"])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    return json.loads(r.stdout)


def by_id(doc: dict) -> dict[str, dict]:
    return {x["id"]: x for x in doc["results"]}


def test_technician_fixes_a_wrong_bridge_radio_with_the_command_diag_names(tmp_path, air, pki):
    region = airtime.region(airtime.DEFAULT_REGION)
    gw = Gateway(tmp_path, air, pki, bridge_settings=WRONG, start=False)
    btn = None
    try:
        repertoire = {  # what a technician on the Pi can run here
            "sudo systemctl start panicgw": gw.run,
            "sudo systemctl restart panicgw": lambda: (gw.stop_daemon(), gw.run()),
        }
        # A shop's button, registered on this gateway, on the region's defaults.
        export = tmp_path / "shop.json"
        registry.write_export(export, [registry.DeviceRecord(
            DEV, KEY, registry.SiteRecord("Toko Sinar", "shop", "Jl. Braga 7, Bandung",
                                          -6.917, 107.609, "Pak Dedi", "+62 811 000 111"),
            label="kasir")])
        r = CliRunner().invoke(gw_app, ["devices", "import", str(export), "--config",
                                        str(gw.config)])
        assert r.exit_code == 0, r.output

        # 1. diag, as docs/diagnostics.md writes it: bridge.radio FAILs and says what to run.
        cmd = diag_command()
        radio = by_id(run_diag(gw, cmd))["bridge.radio"]
        assert radio["status"] == "FAIL", radio
        assert "923.2" in radio["finding"] and f"{region.default_mhz:g}" in radio["finding"]
        assert "SF 10" in radio["finding"] or "SF10" in radio["finding"], radio["finding"]
        assert "settings.toml" not in radio["hint"]  # nobody edits a bridge by hand
        named = [c for c in re.findall(r"`([^`]+)`", radio["hint"]) if c.startswith("sudo ")]
        assert named, f"the hint names no command to run: {radio['hint']!r}"
        assert named[0] in repertoire, (
            f"diag's hint names `{named[0]}`, which a technician on the Pi cannot run here "
            f"({radio['hint']!r})")
        assert named[0] in GATEWAY_DOC.read_text()  # as the install section writes it

        # 2. The technician runs exactly that, and nothing else.
        repertoire[named[0]]()

        # 3. diag passes: the gateway pushed its settings; the bridge's settings.toml is as
        # it came (nobody edited it), its radio runs the gateway's.
        def radio_ok() -> dict | None:
            doc = run_diag(gw, cmd)
            return doc if by_id(doc)["bridge.radio"]["status"] == "PASS" else None

        doc = wait_for(radio_ok, 30, "diag to pass bridge.radio")
        failed = {x["id"]: x["finding"] for x in doc["results"] if x["status"] == "FAIL"}
        assert not failed, failed
        assert gw.bridge.settings == {"PB_FREQUENCY_MHZ": "923.2", "PB_SF": 10}  # as it came
        radio_now = gw.bridge.radio
        assert radio_now is not None and (radio_now.frequency_mhz, radio_now.spreading_factor
                                          ) == (region.default_mhz, region.default_sf)

        # 4. The shop's alarm, on the gateway's settings: ACKed over LoRa and at dispatch.
        wait_for(lambda: gw.status().get("devices") == 1, 15, "the daemon to know the button")
        btn = SimButton(DEV, KEY, air=air, name="kasir")
        btn.start()
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 10), btn.console
        start = len(btn.console)
        btn.alarm()
        ack = btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON ack: alarm "), 15,
                                start)
        assert ack is not None and " via lora " in ack and " status=" in ack, \
            btn.console[start:]
        got = wait_for(lambda: gw.dispatched(DEV, "panic"), 20, "the alarm at dispatch")
        body = got[0]["body"]
        assert got[0]["status"] == 200 and body["contact_id"]["code"] == 122, body
        assert body["test"] is False and body["site"]["name"] == "Toko Sinar"
        counter = int(re.search(r"counter=(\d+)", ack).group(1))
        assert gw.stored(DEV, counter, "alarm") == [("lora", RSSI, SNR)]

        # 5. And diag has nothing left to say: every line PASSes (the button is heard now).
        doc = run_diag(gw, cmd)
        bad = {x["id"]: (x["status"], x["finding"]) for x in doc["results"]
               if x["status"] not in ("PASS", "SKIP")}
        assert not bad and doc["exit_code"] == 0, bad
    finally:
        if btn is not None:
            btn.stop()
        gw.stop()
