"""Stage 4, commit: a new frame's rows and dispatch message go into the batch's transaction,
and its downlink is signed only once that transaction is on disk.

Frames accepted in one batch are written in ONE SQLite transaction (event, reception, outbox
row, replay-window state, rejection counters) and acknowledged only after that commit:
group commit is how one core stores thousands of frames a second with ``synchronous=FULL``
while never acknowledging anything that is not on disk. When the commit fails, nothing of
the batch is acknowledged and the in-memory replay windows go back to where they were, so
the buttons' retries are judged as new frames.
"""

from __future__ import annotations

import logging
from typing import Any

from panicgw.pipeline.dispatch_body import UNKNOWN_SITE, PayloadBuilder, build_or_degrade
from panicgw.pipeline.frame import INTERNAL, REJECTED, RESYNC, STORED, Frame, Outcome
from panicgw.pipeline.incident import Incident
from panicgw.pipeline.rejections import Rejections
from panicgw.pipeline.verify import Device
from panicgw.registry import DeviceRecord
from panicgw.store import PRIO_OTHER, OutboxItem, Store
from panicproto import frames

log = logging.getLogger("panicgw.pipeline")

# (index in the batch, device, uplink, outcome) of a frame that gets a downlink
Ack = tuple[int, Device, frames.Uplink, Outcome]


def write_frame(store: Store, f: Frame, dev: Device, up: frames.Uplink,
                incident_id: str | None, at: float) -> int:
    """The event and its first reception, the window advanced past its counter (saved with
    it) and the device's last-heard state; returns the event id."""
    event_id = store.insert_event(up.device_id, up.counter, frames.TYPE_NAMES[up.kind],
                                  incident_id, at, up.attempt, up.flags, up.battery_mv, f.data,
                                  dev.key_gen)
    store.add_reception(event_id, f.path, f.rssi, f.snr, at, False)
    dev.window.accept(up.counter)
    highest, bitmap = dev.window.state()
    store.save_replay(up.device_id, highest, bitmap)
    store.heard(up.device_id, at, f.path, f.rssi, f.snr, up.battery_mv, up.low_battery)
    return event_id


def dispatch_body(store: Store, builder: PayloadBuilder, gateway_id: str, f: Frame,
                  dev: Device, up: frames.Uplink, inc: Incident,
                  at: float) -> tuple[dict[str, Any], bool]:
    """(body, degraded) of the dispatch message for a stored event frame; raises
    dispatch_body.PayloadFailed when not even a minimal one can be built."""
    rec = store.get_device(up.device_id)
    if rec is None:  # removed between reload and now: still store and forward
        rec = DeviceRecord(up.device_id, dev.key, UNKNOWN_SITE, "(unregistered)")
    return build_or_degrade(
        builder,
        incident_id=inc.incident_id,
        event=inc.event,
        gateway_id=gateway_id,
        first_heard=inc.first_heard,
        last_heard=at,
        site=rec.site.to_dict(),
        device={"id": rec.device_id, "label": rec.label, "battery_mv": up.battery_mv,
                "low_battery": up.low_battery, "firmware": rec.firmware},
        paths=[{"path": f.path, "rssi": f.rssi, "snr": f.snr, "at": at}],
        press_count=inc.press_count,
        counter=inc.first_counter,
        frame_counter=up.counter,  # a repeat press is a new document for dispatch
        key_gen=dev.key_gen,
    )


def stored(f: Frame, up: frames.Uplink, at: float, inc: Incident | None = None,
           outbox: OutboxItem | None = None) -> Outcome:
    """The verdict of a new frame written to the batch (its downlink comes after commit)."""
    incident_id = inc.incident_id if inc is not None else None
    kind = frames.TYPE_NAMES[up.kind]
    return Outcome(STORED, None, device_id=up.device_id, counter=up.counter, kind=kind,
                   incident_id=incident_id,
                   priority=inc.priority if inc is not None else PRIO_OTHER, outbox=outbox,
                   event={"device_id": up.device_id, "counter": up.counter, "type": kind,
                          "path": f.path, "rssi": f.rssi, "snr": f.snr,
                          "battery_mv": up.battery_mv, "at": at,
                          "incident_id": incident_id})


def sign_downlinks(acks: list[Ack], stats: dict[str, int]) -> None:
    """Committed: now, and only now, sign each frame's ACK (or RESYNC)."""
    for _, dev, up, out in acks:
        if out.status == RESYNC:
            down = frames.Downlink(frames.RESYNC, up.device_id, out.counter or 0, 0)
        else:
            down = frames.Downlink(frames.ACK, up.device_id, up.counter, out.ack_status)
            if out.ack_status == frames.DELIVERED:
                stats["acked_delivered"] += 1
        out.downlink = frames.encode_downlink(dev.key, down)
        stats[out.status] += 1


def undo_batch(error: Exception, batch: list[Frame], outcomes: list[Outcome | None],
               acks: list[Ack], devices: dict[int, Device],
               touched: dict[int, tuple[int, int]], rejections: Rejections,
               unsaved: dict[str, int], stats: dict[str, int]) -> list[Outcome]:
    """Nothing of the batch was committed: restore the in-memory windows and the unsaved
    rejection counts, and acknowledge nothing (every frame that would have been is
    rejected as ``internal_error``, counted like any rejection)."""
    for dev_id, (highest, bitmap) in touched.items():
        d = devices.get(dev_id)
        if d is not None:
            d.window.highest, d.window.bitmap = highest, bitmap
    rejections.restore_unsaved(unsaved)
    log.exception("store transaction failed; %d frames not acknowledged", len(batch))
    lost = [i for i, _, _, _ in acks] + [i for i, o in enumerate(outcomes) if o is None]
    for _, _, _, out in acks:
        out.status, out.reason, out.downlink, out.outbox = REJECTED, INTERNAL, None, None
    for o in outcomes:
        if o is not None:
            o.outbox = None  # nothing of this batch is in the outbox
    for i in lost:
        out = outcomes[i] or Outcome(REJECTED, INTERNAL)
        outcomes[i] = out
        # Counted like any rejection (docs/gateway.md): the status API and diag show why
        # buttons get 503s (e.g. a full disk), not just the log.
        rejections.count(INTERNAL, f"store could not commit: {error}", path=batch[i].path,
                         source=batch[i].source, device_id=out.device_id)
        stats["rejected"] += 1
    return [o for o in outcomes if o is not None]
