"""The demo's outcome, computed from evidence only: what the dispatch receiver recorded, what
the gateway reports (status API: rejections, duplicates, bridge) and stored (its SQLite
database), and what the button firmware printed (the moment it recognised a press).

The scenario's intentions appear only as the roles (which button was meant to do what); each
expectation checks that the evidence shows it happened, and says what it saw when not.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from panicdemo.scenario import Scenario
from panicdemo.world import World
from panicgw.forward.payload import incident_key
from panicproto import frames


@dataclass
class Expectation:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(1, math.ceil(p / 100.0 * len(s)))
    return s[k - 1]


def _device_id(body: dict[str, Any]) -> int | None:
    dev = body.get("device")
    if not isinstance(dev, dict):
        return None
    try:
        return int(str(dev.get("id")), 16)
    except ValueError:
        return None


def evidence_paths(world: World, device_id: int, counter: int) -> list[str]:
    """Paths over which the gateway received (device, counter), from its receptions table."""
    return world.inspect(lambda db: db.paths_heard(device_id, counter), [])


def build(world: World, sc: Scenario, status: dict[str, Any] | None,
          elapsed_s: float) -> dict[str, Any]:
    """The summary dict (JSON-ready), including ``expectations`` and ``ok``."""
    roles = sc.roles
    received = world.dispatch.received() if world.dispatch else []
    accepted = [r for r in received if r.verdict == "accepted" and isinstance(r.body, dict)]
    by_event: dict[str, int] = {}
    for r in accepted:
        by_event[r.body["event"]] = by_event.get(r.body["event"], 0) + 1
    verdicts: dict[str, int] = {}
    for r in received:
        verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1

    # Presses the firmware recognised (time, kind, counter) per device.
    presses: dict[str, int] = {}
    press_at: dict[tuple[int, int], float] = {}
    pressed_alarm: set[tuple[int, int]] = set()
    for b in world.buttons:
        for t, kind, counter in b.presses():
            presses[kind] = presses.get(kind, 0) + 1
            press_at[(b.device_id, counter)] = t
            if kind == "alarm":
                pressed_alarm.add((b.device_id, counter))

    # Panic incidents at dispatch, keyed like presses.
    panic_at: dict[tuple[int, int], list[float]] = {}
    for r in accepted:
        if r.body["event"] != "panic":
            continue
        key = incident_key(r.body["incident_id"])
        if key is not None:
            panic_at.setdefault(key, []).append(r.at)
    latencies = [min(ts) - press_at[k] for k, ts in panic_at.items() if k in press_at]

    st = status or {}
    rejections = {k: int(v) for k, v in (st.get("rejections") or {}).items()}
    frames_st = st.get("frames") or {}
    bridge = st.get("bridge") or {}
    heartbeats, hb_devices = world.inspect(lambda db: db.heartbeats(), (0, 0))
    devices_heard = world.inspect(lambda db: db.devices_heard(), 0)

    exp: list[Expectation] = []

    def expect(name: str, ok: bool, detail: str) -> None:
        exp.append(Expectation(name, bool(ok), detail))

    # Every panic press delivered exactly once, and nothing else delivered as a panic.
    missing = sorted(pressed_alarm - set(panic_at))
    extra = sorted(set(panic_at) - pressed_alarm)
    twice = sorted(k for k, ts in panic_at.items() if len(ts) > 1)
    expect("every panic press delivered to dispatch exactly once",
           pressed_alarm and not missing and not extra and not twice,
           f"{len(pressed_alarm)} presses, {len(panic_at)} panic incidents at dispatch"
           + (f"; missing {[f'{d:08X}/{c:08X}' for d, c in missing]}" if missing else "")
           + (f"; unexpected {[f'{d:08X}/{c:08X}' for d, c in extra]}" if extra else "")
           + (f"; delivered twice {[f'{d:08X}/{c:08X}' for d, c in twice]}" if twice else ""))

    def role_panic(dev: int) -> tuple[int, int] | None:
        keys = [k for k in pressed_alarm if k[0] == dev]
        return keys[0] if keys else None

    dual = role_panic(roles.dual_path)
    paths = evidence_paths(world, *dual) if dual else []
    expect("dual-path panic heard over LoRa and Wi-Fi, delivered once",
           dual is not None and {"lora", "wifi"} <= set(paths) and len(panic_at.get(dual, []))
           == 1,
           f"receptions {paths or 'none'}; dispatch copies {len(panic_at.get(dual, []))}"
           if dual else "the button never recognised the press")

    ack = role_panic(roles.ack_lost)
    dropped = [p for name, p in world.air.dropped if name == "ack lost"]
    ack_paths = evidence_paths(world, *ack) if ack else []
    dropped_txt = [decode_ack(world, p, roles.ack_lost) for p in dropped]
    expect("ACK lost on the air: the button retried, delivered once",
           ack is not None and any(t.endswith(f"0x{ack[1]:08X}") for t in dropped_txt)
           and len(ack_paths) >= 2 and len(panic_at.get(ack, [])) == 1,
           f"dropped on the air: {dropped_txt or 'nothing'}; gateway received the frame "
           f"{len(ack_paths)}x; "
           f"dispatch copies {len(panic_at.get(ack, [])) if ack else 0}")

    expect("forged frames rejected (bad_tag)", rejections.get("bad_tag", 0) >= 1,
           f"gateway rejections: {rejections or 'none'}")
    forged_panics = [k for k in panic_at if k[0] == roles.forged_target]
    expect("forged frames never reached dispatch", not forged_panics
           and not any(_device_id(r.body) == 0x0BADBEEF for r in accepted),
           f"{len(forged_panics)} dispatch incidents for the forged device")
    expect("replayed frame rejected (replay)", rejections.get("replay", 0) >= 1,
           "attacker's recording " + ("captured" if sc.captured else "missing") +
           f"; gateway 'replay' rejections {rejections.get('replay', 0)}")

    expect("bridge unplug noticed and reception resumed after replug",
           int(bridge.get("disconnects") or 0) >= 1 and int(bridge.get("connects") or 0) >= 2
           and bridge.get("state") == "connected",
           f"bridge connects {bridge.get('connects')}, disconnects {bridge.get('disconnects')},"
           f" now {bridge.get('state')}")

    lost = [r for r in accepted if r.body["event"] == "supervision_lost"]
    lost_ids = sorted({_device_id(r.body) for r in lost if _device_id(r.body) is not None})
    expect("silent button reported lost (381) to dispatch, and only that one",
           lost_ids == [roles.silent],
           f"supervision_lost for {[f'{d:08X}' for d in lost_ids] or 'nobody'}; silent button "
           f"{roles.silent:08X}")

    tests = [r for r in accepted if r.body["event"] == "test"]
    test_dev = [r for r in tests if _device_id(r.body) == roles.test]
    expect("TEST press delivered once as Contact ID 601 (test, not an alarm)",
           len(test_dev) == 1 and test_dev[0].body["contact_id"]["code"] == 601
           and test_dev[0].body["test"] is True,
           f"{len(test_dev)} test incidents from the TEST button")
    # LoRa is ALOHA: a heartbeat that collides on all 3 attempts is lost (that is why
    # supervision waits 2 intervals + grace), so most, not all, buttons must be heard.
    expect("heartbeats stored from at least 3/4 of the buttons",
           4 * hb_devices >= 3 * len(world.buttons),
           f"{heartbeats} heartbeats from {hb_devices} of {len(world.buttons)} buttons")
    bad = [r for r in received if r.verdict not in ("accepted", "duplicate")]
    expect("every dispatch request authentic and schema-valid", received and not bad,
           f"{len(received)} requests" + (f"; refused: {[(r.verdict, r.errors[:1]) for r in bad]}"
                                          if bad else ""))
    expect("alarm latency measured", bool(latencies) and all(x > 0 for x in latencies),
           f"{len(latencies)} alarms timed")

    air_dropped: dict[str, int] = {}
    for name, _ in world.air.dropped:
        air_dropped[name] = air_dropped.get(name, 0) + 1
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    summary = {
        "ok": all(e.ok for e in exp),
        "elapsed_s": round(elapsed_s, 1),
        "gateway_id": world.gateway_id,
        "buttons": {"lora": world.n_lora, "wifi": world.n_wifi},
        "presses": presses,
        "incidents_delivered": {"total": len(accepted), "by_event": dict(sorted(by_event.items()))},
        "dispatch_requests": {"total": len(received), "by_verdict": verdicts},
        "duplicates_suppressed": int(frames_st.get("duplicate", 0)),
        "frames": {k: int(v) for k, v in frames_st.items()},
        "rejections": dict(sorted(rejections.items())),
        "heartbeats_stored": heartbeats,
        "devices_heard": devices_heard,
        "alarm_latency_s": {
            "count": len(latencies),
            "p50": round(p50, 3) if p50 is not None else None,
            "p99": round(p99, 3) if p99 is not None else None,
            "max": round(max(latencies), 3) if latencies else None,
            "from": "button recognised the hold (firmware console) to dispatch receipt",
        },
        "bridge": {k: bridge.get(k) for k in ("state", "connects", "disconnects")},
        "mqtt": ((st.get("broker") or {}) if world.mqtt_broker
                 else "no broker on 127.0.0.1:1883; MQTT off"),
        "air_faults": air_dropped,
        "roles": {k: (f"{v:08X}" if isinstance(v, int) else [f"{x:08X}" for x in v])
                  for k, v in vars(roles).items()},
        "dispatch_log": [
            {"at": round(r.at - world.started_at, 2), "event": r.body["event"],
             "contact_id": r.body["contact_id"]["display"],
             "device": (r.body.get("device") or {}).get("id"),
             "site": (r.body.get("site") or {}).get("name"), "incident_id": r.body["incident_id"]}
            for r in accepted],
        "expectations": [e.to_dict() for e in exp],
        "failed": [e.name for e in exp if not e.ok],
    }
    json.dumps(summary)  # fail here, not in the caller's print, if anything is not JSON
    return summary


def decode_ack(world: World, payload: bytes, device_id: int) -> str:
    """Human text for a dropped downlink (verified with the device's key)."""
    for r in world.records:
        if r.device_id == device_id:
            try:
                d = frames.decode_downlink(payload, r.key)
            except ValueError as e:
                return f"undecodable ({e})"
            return f"{frames.TYPE_NAMES.get(d.kind, d.kind)} counter 0x{d.counter:08X}"
    return "unknown device"
