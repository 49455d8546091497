"""The dispatch JSON body (contract 2; docs/dispatch-api.md is the integrator's view).

The pipeline calls :func:`build_payload` when it stores an event, so the outbox row already
holds the exact body; the forwarder only stamps ``times.forwarded`` at send time.

Incident ids and idempotency keys are derived from what every gateway sees the same way
(device id, the button's counter, the event kind, and the device's key generation from the
registry), never from local row ids: a press heard by three gateways reaches dispatch as three
POSTs with one ``Idempotency-Key``, and dispatch keeps one incident. A rekey restarts the
button's counter, so from key generation 2 on the generation is part of both (generation 1
keeps the original format: outboxes and dispatch records from before stay valid).

Contact ID mapping (SIA DC-05), qualifier 1 = new event, 3 = restore:

=========================  ====  =========  ===============================================
event                      code  qualifier  why
=========================  ====  =========  ===============================================
panic                      122   1          buttons are silent by default: "silent panic";
                                            120 "panic" when the caller says silent=False
test                       601   1          installer's manual test, never a real alarm
tamper                     137   1          case opened / tamper switch
cancel                     406   1          user cancel of the incident
supervision_lost           381   1          RF supervision loss: button silent too long
supervision_restore        381   3          (sent as 3381) heard again
low_battery                384   1          RF low battery
low_battery_restore        384   3          (3384) battery good again
gateway_checkin            602   1          periodic test: dispatch notices a dead gateway
gateway_trouble            330   1          system peripheral trouble: the LoRa bridge is
                                            missing from the gateway (no radio reception)
gateway_trouble_restore    330   3          bridge back
device_trouble             380   1          sensor trouble: a button the gateway can no
                                            longer accept (its counter space is used up:
                                            it must be rekeyed, docs/protocol.md)
=========================  ====  =========  ===============================================
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from panicgw.registry import PATHS, SITE_KINDS
from panicgw.store import PRIO_ALARM, PRIO_EVENT, PRIO_OTHER, PRIO_TROUBLE

SCHEMA_VERSION = 1


class PayloadError(ValueError):
    """The arguments cannot make a valid dispatch body; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class EventSpec(NamedTuple):
    code: int
    qualifier: int
    category: str  # "alarm" | "event" | "trouble" | "info": how dispatch should triage
    priority: int  # outbox priority (store.PRIO_*); smaller is more urgent
    text: str
    needs_device: bool


EVENTS: dict[str, EventSpec] = {
    "panic": EventSpec(122, 1, "alarm", PRIO_ALARM, "Silent panic", True),
    "test": EventSpec(601, 1, "event", PRIO_EVENT, "Manual test", True),
    "tamper": EventSpec(137, 1, "event", PRIO_EVENT, "Tamper", True),
    "cancel": EventSpec(406, 1, "event", PRIO_EVENT, "Cancel", True),
    "supervision_lost": EventSpec(381, 1, "trouble", PRIO_TROUBLE, "RF supervision loss", True),
    "supervision_restore": EventSpec(381, 3, "trouble", PRIO_TROUBLE,
                                     "RF supervision restored", True),
    "low_battery": EventSpec(384, 1, "trouble", PRIO_TROUBLE, "RF low battery", True),
    "low_battery_restore": EventSpec(384, 3, "trouble", PRIO_TROUBLE,
                                     "RF low battery restored", True),
    "gateway_checkin": EventSpec(602, 1, "info", PRIO_OTHER, "Periodic test report", False),
    "gateway_trouble": EventSpec(330, 1, "trouble", PRIO_TROUBLE,
                                 "System peripheral trouble", False),
    "gateway_trouble_restore": EventSpec(330, 3, "trouble", PRIO_TROUBLE,
                                         "System peripheral restored", False),
    "device_trouble": EventSpec(380, 1, "trouble", PRIO_TROUBLE, "Sensor trouble", True),
}

PANIC_AUDIBLE = 120  # the one allowed override of an event's code (``silent=False``)
MAX_TEXT = 500


def priority_for(event: str) -> int:
    """Outbox priority of an event kind (ALARM first)."""
    try:
        return EVENTS[event].priority
    except KeyError:
        raise PayloadError("unknown_event", repr(event)) from None


def rfc3339(t: float) -> str:
    """Unix seconds -> ``2024-05-01T12:00:00.123Z`` (UTC, milliseconds)."""
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
        raise PayloadError("bad_time", repr(t))
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def device_hex(device_id: int) -> str:
    """Device ids are shown as 8 upper-case hex digits everywhere (labels, logs, dispatch)."""
    if not isinstance(device_id, int) or isinstance(device_id, bool) or not (
        0 <= device_id <= 0xFFFFFFFF
    ):
        raise PayloadError("bad_device_id", repr(device_id))
    return f"{device_id:08X}"


def _key_gen(key_gen: int) -> int:
    if not isinstance(key_gen, int) or isinstance(key_gen, bool) or key_gen < 1:
        raise PayloadError("bad_key_gen", repr(key_gen))
    return key_gen


def make_incident_id(device_id: int, first_counter: int, event: str, key_gen: int = 1) -> str:
    """Stable across gateways: the device, the counter of the incident's first frame, the kind,
    and (from the second) the key generation that counter belongs to.

    Use it for button incidents so every gateway that heard the first press names the incident
    the same way: ``1234ABCD-00030007-panic`` under the device's first key, and
    ``1234ABCD-00030007-panic-g2`` after one rekey (its counter started again, so the same
    counter is another press).
    """
    if event not in EVENTS:
        raise PayloadError("unknown_event", repr(event))
    if not isinstance(first_counter, int) or not 0 <= first_counter <= 0xFFFFFFFF:
        raise PayloadError("bad_counter", repr(first_counter))
    gen = _key_gen(key_gen)
    base = f"{device_hex(device_id)}-{first_counter:08X}-{event}"
    return base if gen == 1 else f"{base}-g{gen}"


def incident_key(incident_id: str) -> tuple[int, int] | None:
    """(device id, first counter) named by an id from :func:`make_incident_id`; None for
    any other id (the gateway's own incidents, :func:`make_gateway_incident_id`)."""
    parts = incident_id.split("-")
    if len(parts) < 3 or len(parts[0]) != 8 or len(parts[1]) != 8 or parts[2] not in EVENTS:
        return None
    try:
        return int(parts[0], 16), int(parts[1], 16)
    except ValueError:
        return None


def incident_counter(incident_id: str) -> int:
    """The first counter named by an id from :func:`make_incident_id`."""
    key = incident_key(incident_id)
    if key is None:
        raise ValueError(f"not a button incident id: {incident_id!r}")
    return key[1]


def make_gateway_incident_id(gateway_id: str, event: str, at: float) -> str:
    """Incident id for the gateway's own events (check-in, trouble): one per gateway and time."""
    if event not in EVENTS:
        raise PayloadError("unknown_event", repr(event))
    return f"{gateway_id}-{event}-{int(at)}"


def idempotency_key(
    event: str,
    *,
    device_id: int | None = None,
    counter: int | None = None,
    gateway_id: str = "",
    at: float = 0.0,
    key_gen: int = 1,
) -> str:
    """The ``Idempotency-Key`` dispatch deduplicates on (32 hex digits).

    Button events: SHA-256 of (device, counter, event), and the key generation from the
    second on: the same on every gateway that heard the frame (they share the registry's
    generation), different for a press whose counter repeats one from before a rekey.
    ``counter`` is the counter of the frame behind the message for presses, the highest
    counter heard before the silence for supervision loss, the restoring frame's counter for
    restores, the reporting frame's for low battery.
    Gateway events (no device): (gateway id, event, whole second), unique per gateway.
    """
    if event not in EVENTS:
        raise PayloadError("unknown_event", repr(event))
    gen = _key_gen(key_gen)
    if device_id is not None and counter is not None:
        dev = device_hex(device_id) if gen == 1 else f"{device_hex(device_id)}|g{gen}"
        material = f"panic-dispatch/1|dev|{dev}|{counter:08X}|{event}"
    else:
        material = f"panic-dispatch/1|gw|{gateway_id}|{event}|{int(at)}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def _opt_num(v: Any, what: str) -> float | None:
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        raise PayloadError(f"bad_{what}", repr(v))
    return float(v)


def _text(v: Any, what: str, empty_ok: bool = True) -> str:
    if v is None:
        v = ""
    if not isinstance(v, str) or (not empty_ok and not v.strip()):
        raise PayloadError(f"bad_{what}", repr(v))
    return v[:MAX_TEXT]


def _site(site: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(site, Mapping):
        raise PayloadError("bad_site", "must be a mapping")
    lat = _opt_num(site.get("lat"), "site_lat")
    lon = _opt_num(site.get("lon"), "site_lon")
    if lat is None or not -90 <= lat <= 90:
        raise PayloadError("bad_site_lat", repr(site.get("lat")))
    if lon is None or not -180 <= lon <= 180:
        raise PayloadError("bad_site_lon", repr(site.get("lon")))
    kind = site.get("kind")
    if kind not in SITE_KINDS:
        raise PayloadError("bad_site_kind", repr(kind))
    return {
        "name": _text(site.get("name"), "site_name", empty_ok=False),
        "kind": kind,
        "address": _text(site.get("address"), "site_address"),
        "lat": lat,
        "lon": lon,
        "contact": _text(site.get("contact"), "site_contact"),
        "phone": _text(site.get("phone"), "site_phone"),
    }


def _device(device: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(device, Mapping):
        raise PayloadError("bad_device", "must be a mapping")
    raw_id = device.get("id", device.get("device_id"))
    if isinstance(raw_id, str):
        try:
            raw_id = int(raw_id, 16)
        except ValueError:
            raise PayloadError("bad_device_id", repr(raw_id)) from None
    battery = device.get("battery_mv")
    if battery is not None and (
        not isinstance(battery, int) or isinstance(battery, bool) or not 0 <= battery <= 10000
    ):
        raise PayloadError("bad_battery_mv", repr(battery))
    firmware = device.get("firmware")
    if firmware is not None and not isinstance(firmware, str):
        raise PayloadError("bad_firmware", repr(firmware))
    return {
        "id": device_hex(raw_id),
        "label": _text(device.get("label"), "device_label"),
        "battery_mv": battery,
        "low_battery": bool(device.get("low_battery", False)),
        "firmware": firmware[:64] if firmware else None,
    }


def _paths(paths: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        if not isinstance(p, Mapping) or p.get("path") not in PATHS:
            raise PayloadError("bad_path", repr(p))
        at = p.get("at")
        out.append({
            "path": p["path"],
            "rssi": _opt_num(p.get("rssi"), "rssi"),
            "snr": _opt_num(p.get("snr"), "snr"),
            "at": rfc3339(at) if at is not None else None,
        })
    return out


def build_payload(
    *,
    incident_id: str,
    event: str,
    gateway_id: str,
    first_heard: float,
    site: Mapping[str, Any] | None = None,
    device: Mapping[str, Any] | None = None,
    paths: Sequence[Mapping[str, Any]] = (),
    press_count: int = 1,
    counter: int | None = None,
    frame_counter: int | None = None,
    last_heard: float | None = None,
    forwarded: float | None = None,
    silent: bool = True,
    code: int | None = None,
    qualifier: int | None = None,
    detail: str = "",
    key_gen: int = 1,
) -> dict[str, Any]:
    """Build the dispatch body (a JSON-ready dict valid against dispatch-event.schema.json).

    - ``event``: a key of :data:`EVENTS`; ``code``/``qualifier`` default from it (the only
      allowed override is ``panic`` with 120 instead of 122; ``silent=False`` does the same).
    - ``site``: ``SiteRecord.to_dict()`` (name, kind, address, lat, lon, contact, phone).
    - ``device``: {"id" (int or 8 hex), "label", "battery_mv", "low_battery", "firmware"}.
    - ``paths``: receptions [{"path": "lora"|"wifi", "rssi", "snr", "at" (unix s)}].
    - ``counter``: the incident's first counter; ``frame_counter``: the counter of the frame
      that caused this message (a repeat press). The ``Idempotency-Key`` uses
      ``frame_counter`` when given, else ``counter`` (see :func:`idempotency_key`): each
      button frame is one dispatch message, the same on every gateway that heard it, while
      repeat presses stay new messages about the same ``incident_id``.
    - ``key_gen``: the device's key generation (registry) the counters belong to; part of
      the ``Idempotency-Key`` from generation 2 on (a rekey restarts the counter).
    - times are Unix seconds; ``forwarded`` is re-stamped by the forwarder on every attempt.

    Raises PayloadError (with a ``reason`` to count) on bad input; never returns a body that
    the schema would reject.
    """
    spec = EVENTS.get(event)
    if spec is None:
        raise PayloadError("unknown_event", repr(event))
    if spec.needs_device and (device is None or site is None):
        raise PayloadError("missing_device", f"{event} needs device and site")
    if code is None:
        code = PANIC_AUDIBLE if event == "panic" and not silent else spec.code
    if code != spec.code and not (event == "panic" and code == PANIC_AUDIBLE):
        raise PayloadError("bad_contact_id", f"{event} cannot be code {code}")
    qualifier = spec.qualifier if qualifier is None else qualifier
    if qualifier != spec.qualifier:
        raise PayloadError("bad_contact_id", f"{event} has qualifier {spec.qualifier}")
    if not isinstance(incident_id, str) or not 1 <= len(incident_id) <= 128:
        raise PayloadError("bad_incident_id", repr(incident_id))
    if not isinstance(gateway_id, str) or not 1 <= len(gateway_id) <= 64:
        raise PayloadError("bad_gateway_id", repr(gateway_id))
    if not isinstance(press_count, int) or isinstance(press_count, bool) or press_count < 1:
        raise PayloadError("bad_press_count", repr(press_count))
    dev = _device(device) if device is not None else None
    for c in (counter, frame_counter):
        if c is not None and (not isinstance(c, int) or isinstance(c, bool)
                              or not 0 <= c <= 0xFFFFFFFF):
            raise PayloadError("bad_counter", repr(c))
    key = idempotency_key(
        event,
        device_id=int(dev["id"], 16) if dev else None,
        counter=frame_counter if frame_counter is not None else counter,
        gateway_id=gateway_id,
        at=first_heard,
        key_gen=key_gen,
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "incident_id": incident_id,
        "idempotency_key": key,
        "event": event,
        "category": spec.category,
        "test": event == "test",
        "contact_id": {
            "code": code,
            "qualifier": qualifier,
            "display": f"{qualifier}{code:03d}",
            "text": "Panic" if code == PANIC_AUDIBLE else spec.text,
        },
        "site": _site(site) if site is not None else None,
        "device": dev,
        "paths": _paths(paths),
        "times": {
            "first_heard": rfc3339(first_heard),
            "last_heard": rfc3339(last_heard if last_heard is not None else first_heard),
            "forwarded": rfc3339(forwarded if forwarded is not None else first_heard),
        },
        "press_count": press_count,
        "gateway_id": gateway_id,
        "detail": _text(detail, "detail"),
    }
