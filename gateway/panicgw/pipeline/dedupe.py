"""Stage 2, dedupe: a verified copy of a frame already stored is re-acknowledged, never
forwarded again.

The dedupe key is (device id, key generation, counter): a rekey restarts the button's
counter, so a counter under the new key is another frame than the same counter under an
old one. A copy (a retry, or the other path's copy, also below the replay window) gets its
path, RSSI and SNR recorded, and its re-ACK says DELIVERED once dispatch confirmed the event
(contract C1): the button, asking again after STORED, learns the police have it.
"""

from __future__ import annotations

from panicgw.pipeline.frame import DUPLICATE, Frame, Outcome
from panicgw.pipeline.verify import Device
from panicgw.store import Store
from panicproto import frames, replay


def stored_copy(store: Store, dev: Device, up: frames.Uplink,
                verdict: str) -> tuple[int, str | None] | None:
    """(event id, incident id) of the stored frame this one copies; None for a new counter
    (the window says so without a read) or one never stored."""
    if verdict == replay.NEW:
        return None
    return store.find_event(up.device_id, up.counter, dev.key_gen)


def re_acknowledge(store: Store, f: Frame, up: frames.Uplink,
                   existing: tuple[int, str | None] | None, at: float) -> Outcome:
    """Record this copy and answer it like the original (``existing`` is None for a copy the
    window knows but the store no longer holds, such as a pruned heartbeat)."""
    delivered = False
    if existing is not None:
        store.add_reception(existing[0], f.path, f.rssi, f.snr, at, True)
        delivered = store.dispatch_confirmed(existing[0], existing[1])
    store.heard(up.device_id, at, f.path, f.rssi, f.snr, up.battery_mv, up.low_battery)
    return Outcome(DUPLICATE, None, device_id=up.device_id, counter=up.counter,
                   kind=frames.TYPE_NAMES[up.kind],
                   incident_id=existing[1] if existing else None,
                   ack_status=frames.DELIVERED if delivered else frames.STORED)
