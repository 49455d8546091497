"""A button whose counter space is used up: its frames are refused, and one
``device_trouble`` incident tells dispatch so.

A verified frame below the window of a device whose highest epoch is 0xFFFF cannot be
answered with a RESYNC (it would have to carry a counter above 0xFFFFFFFF). The frame is
refused (no ACK: nothing was stored); the first such frame per device and counter state
raises a ``device_trouble`` event naming the device, stored and forwarded like other
trouble. The fix is a new key (``panictool rekey``), which resets the counter.
"""

from __future__ import annotations

import logging

from panicgw.forward import payload as dispatch_payload
from panicgw.pipeline.frame import Frame
from panicgw.pipeline.verify import Device
from panicgw.store import OutboxItem, Store
from panicproto import frames

log = logging.getLogger("panicgw.pipeline")

EVENT = "device_trouble"


def describe(up: frames.Uplink) -> str:
    """The rejection detail for a frame refused this way."""
    return (f"device 0x{up.device_id:08X} counter 0x{up.counter:08X} is below its window at "
            "the last epoch 0xFFFF: rekey it (panictool rekey)")


def raise_trouble(store: Store, gateway_id: str, f: Frame, dev: Device, up: frames.Uplink,
                  at: float) -> OutboxItem | None:
    """Store and queue the device's ``device_trouble`` message, unless it was raised already
    for this counter state (or the device is no longer registered); the outbox item, or
    None. Never raises: the frame is refused either way, and the next one tries again."""
    incident_id = dispatch_payload.make_incident_id(up.device_id, dev.window.highest, EVENT,
                                                    dev.key_gen)
    if store.incident(incident_id) is not None:
        return None  # already raised for this device and counter state
    rec = store.get_device(up.device_id)
    if rec is None:
        return None
    kind_name = frames.TYPE_NAMES[up.kind]
    detail = (f"Button 0x{up.device_id:08X} ({rec.label}) cannot be heard any more: its "
              f"counter space is used up (highest counter 0x{dev.window.highest:08X}, "
              f"epoch 0xFFFF), so the gateway refuses its frames, alarms included "
              f"(last refused: {kind_name}). An installer must rekey it with "
              "`panictool rekey`.")
    try:
        with store.savepoint("trouble"):
            store.create_incident(incident_id, up.device_id, EVENT, at, dev.key_gen)
            payload = dispatch_payload.build_payload(
                incident_id=incident_id, event=EVENT, gateway_id=gateway_id,
                first_heard=at, site=rec.site.to_dict(),
                device={"id": up.device_id, "label": rec.label, "battery_mv": up.battery_mv,
                        "low_battery": up.low_battery, "firmware": rec.firmware},
                paths=[{"path": f.path, "rssi": f.rssi, "snr": f.snr, "at": at}],
                counter=dev.window.highest, detail=detail[:500], key_gen=dev.key_gen)
            prio = dispatch_payload.priority_for(EVENT)
            item_id = store.enqueue(incident_id, prio, payload, at)
    except Exception:
        log.exception("could not raise device_trouble for 0x%08X", up.device_id)
        return None
    log.error("device 0x%08X: counter space exhausted; device_trouble raised, rekey it "
              "with panictool rekey", up.device_id,
              extra={"fields": {"device_id": up.device_id, "incident_id": incident_id}})
    return OutboxItem(item_id, incident_id, prio, payload, 0, at)
