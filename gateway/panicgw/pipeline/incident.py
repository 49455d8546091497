"""Stage 3, incident: a new alarm, tamper, cancel or test opens an incident or joins the open
one, and counts the press.

Repeat presses of one button (same kind, same key generation) within ``incident_window_s``
join one incident; each adds a dispatch message with the incident's id and the new press
count. Incident ids come from ``forward.payload.make_incident_id`` (the first press's device
and counter, the kind, the key generation), so a press retried across a gateway crash, or
heard by another gateway, always names the same incident, and one after a rekey never names
an incident from before it. Heartbeats have no incident.
"""

from __future__ import annotations

from typing import NamedTuple

from panicgw.forward.payload import incident_counter, make_incident_id, priority_for
from panicgw.store import Store
from panicproto import frames

# Uplink types that are dispatch events, and the dispatch event each one is.
UPLINK_EVENT = {
    frames.ALARM: "panic",  # a silent panic: buttons are silent
    frames.TAMPER: "tamper",
    frames.CANCEL: "cancel",
    frames.TEST: "test",
}


class Incident(NamedTuple):
    incident_id: str
    event: str  # the dispatch event (forward.payload.EVENTS)
    priority: int  # outbox priority of its messages
    first_counter: int  # the counter of the incident's first frame
    first_heard: float
    press_count: int


def open_or_join(store: Store, up: frames.Uplink, key_gen: int, at: float,
                 window_s: float) -> Incident:
    """The incident this new frame belongs to, created or touched in the store. Call only for
    an uplink type in :data:`UPLINK_EVENT`, inside the batch's transaction."""
    event = UPLINK_EVENT[up.kind]
    kind_name = frames.TYPE_NAMES[up.kind]
    found = store.open_incident(up.device_id, kind_name, at - window_s, key_gen)
    if found is not None and window_s > 0:
        incident_id, first_heard, _ = found
        press_count = store.touch_incident(incident_id, at)
        first_counter = incident_counter(incident_id)
    else:
        incident_id = make_incident_id(up.device_id, up.counter, event, key_gen)
        first_counter, first_heard, press_count = up.counter, at, 1
        store.create_incident(incident_id, up.device_id, kind_name, at, key_gen)
    return Incident(incident_id, event, priority_for(event), first_counter, first_heard,
                    press_count)
