"""`panicdemo --json` run as a user would, its numbers checked against the scenario's
ground truth (what the script makes happen) and against each other; and the summary's
judgement checked on evidence that must fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from panicdemo import summary
from panicdemo.scenario import Roles

BIN = Path(sys.executable).parent


def test_demo_json_summary_matches_the_scenario():
    r = subprocess.run([str(BIN / "panicdemo"), "--json", "--seed", "11"],
                       capture_output=True, text=True, timeout=100)
    s = json.loads(r.stdout)
    failed = [e for e in s["expectations"] if not e["ok"]]
    assert r.returncode == 0 and s["ok"], failed
    roles = s["roles"]
    n_panic = 2 + len(roles["extra_panics"])  # dual-path + ACK-lost + other shops
    assert s["buttons"] == {"lora": 20, "wifi": 2}
    assert s["presses"] == {"alarm": n_panic, "test": 1}
    by = s["incidents_delivered"]["by_event"]
    assert by["panic"] == n_panic and by["test"] == 1 and by["supervision_lost"] == 1
    assert by["gateway_checkin"] >= 1
    assert s["incidents_delivered"]["total"] == sum(by.values()) == len(s["dispatch_log"])
    log = s["dispatch_log"]
    panic_devs = {d["device"] for d in log if d["event"] == "panic"}
    assert panic_devs == {roles["dual_path"], roles["ack_lost"], *roles["extra_panics"]}
    assert [d["device"] for d in log if d["event"] == "supervision_lost"] == [roles["silent"]]
    assert [d["device"] for d in log if d["event"] == "test"] == [roles["test"]]
    assert all(d["contact_id"] == "1122" for d in log if d["event"] == "panic")
    assert roles["forged_target"] not in panic_devs
    # the gateway's own counters: forged and replayed frames rejected with their reasons
    assert s["rejections"]["bad_tag"] >= 1 and s["rejections"]["replay"] >= 1
    assert s["rejections"]["unknown_device"] >= 1
    assert s["duplicates_suppressed"] >= 1  # dual-path copy and the ACK-lost retry
    assert s["air_faults"]["ack lost"] == 1
    lat = s["alarm_latency_s"]
    assert lat["count"] == n_panic and 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert s["bridge"]["disconnects"] >= 1 and s["bridge"]["state"] == "connected"
    assert s["mqtt"]  # either the broker's stats or why MQTT is off
    assert s["settled"] is True


class _Rec:
    def __init__(self, at: float, body: dict, verdict: str = "accepted") -> None:
        self.at, self.body, self.verdict, self.errors = at, body, verdict, []


class _Btn:
    def __init__(self, dev: int, presses: list) -> None:
        self.device_id, self._p = dev, presses

    def presses(self):
        return self._p


def test_summary_fails_on_double_delivery_and_missing_rejections():
    """A panic delivered twice (two accepted copies under different keys) and no forged or
    replayed frame rejected: the summary must say so, not echo the script."""
    dev = 0x11111111
    panic = {"event": "panic", "incident_id": f"{dev:08X}-00010001-panic",
             "device": {"id": f"{dev:08X}"}, "site": {"name": "x"},
             "contact_id": {"code": 122, "display": "1122"}}
    world = SimpleNamespace(
        dispatch=SimpleNamespace(received=lambda: [_Rec(10.5, panic), _Rec(11.0, panic)]),
        buttons=[_Btn(dev, [(10.0, "alarm", 0x00010001)])], records=[],
        inspect=lambda question, default: default, air=SimpleNamespace(dropped=[]),
        n_lora=1, n_wifi=0, gateway_id="gw", mqtt_broker=False, started_at=0.0)
    roles = Roles(ack_lost=2, silent=3, replay_victim=4, test=5, forged_target=6,
                  dual_path=dev)
    sc = SimpleNamespace(roles=roles, captured=None)
    s = summary.build(world, sc, {"rejections": {}, "frames": {}, "bridge": {}}, 1.0)
    assert s["ok"] is False
    assert "every panic press delivered to dispatch exactly once" in s["failed"]
    assert "forged frames rejected (bad_tag)" in s["failed"]
    assert "replayed frame rejected (replay)" in s["failed"]
    first = next(e for e in s["expectations"] if e["name"].startswith("every panic"))
    assert "delivered twice" in first["detail"]
    assert s["alarm_latency_s"]["count"] == 1 and s["alarm_latency_s"]["p50"] == 0.5
