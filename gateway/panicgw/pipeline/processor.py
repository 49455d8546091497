"""Frame pipeline: decode -> device lookup -> tag -> anti-replay -> dedupe -> incident -> store.

``Pipeline.process_batch`` takes frames as they came off the bridge or the HTTP server and
returns one ``Outcome`` each, with the downlink to send back. Frames accepted in one batch
are written in ONE SQLite transaction (event, receptions, outbox row, replay-window state,
rejection counters) and acknowledged only after that commit: group commit is how one core
stores thousands of frames a second with ``synchronous=FULL`` while never acknowledging
anything that is not on disk.

Rules (docs/gateway.md):
- The dedupe key is (device id, key generation, counter): a rekey restarts the button's
  counter and the replay window, so a counter of the new key is another frame than the same
  counter of an old one. A verified copy of a stored frame (a retry, or the other path's
  copy) is re-acknowledged and its path/RSSI/SNR recorded, never forwarded.
- Each batch starts from the registry as committed (keys, key generations, windows): a rekey
  takes effect at the next batch, and no frame verified with the old key can write its
  window over the new key's.
- A verified counter older than the replay window that we never stored gets a signed
  RESYNC telling the button the next counter to use (the next epoch above the highest seen).
- Repeat presses of one button within ``incident_window_s`` join one incident. Incident ids
  derive from the first press's (device, counter) and the key generation, so a press
  retried across a gateway crash, or heard by another gateway, always names the same
  incident, and one after a rekey never names an incident from before it.
- Every rejection gets a reason, is counted, and is logged at a bounded rate.
- A dispatch payload that cannot be built (bad site data, a builder bug) never fails the
  batch: the event is stored and acknowledged and the outbox gets a degraded body (the failed
  parts replaced, ``detail`` starting with ``DEGRADED:``), see ``_payload``. Only when even
  the minimal body fails is that one frame rolled back and rejected (``payload_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from panicgw.forward import payload as dispatch_payload
from panicgw.forward.payload import build_payload
from panicgw.registry import DeviceRecord, SiteRecord
from panicgw.store import PRIO_ALARM, PRIO_EVENT, PRIO_OTHER, OutboxItem, Store
from panicproto import frames, replay
from panicproto.errors import ProtocolError

log = logging.getLogger("panicgw.pipeline")

# Rejection reasons beyond the protocol's own (panicproto.errors.REASONS).
UNKNOWN_DEVICE = "unknown_device"
REPLAY = "replay"
COUNTER_EXHAUSTED = "counter_exhausted"  # stale, verified, and no epoch left to RESYNC to
INTERNAL = "internal_error"
PAYLOAD_ERROR = "payload_error"  # the dispatch payload builder failed (event still stored)

# Dispatch event name, Contact ID code and outbox priority per uplink type.
EVENT_KIND = {
    frames.ALARM: ("panic", 122, PRIO_ALARM),  # silent panic: buttons are silent
    frames.TAMPER: ("tamper", 137, PRIO_EVENT),
    frames.CANCEL: ("cancel", 406, PRIO_EVENT),
    frames.TEST: ("test", 601, PRIO_EVENT),
}

STORED = "stored"
DUPLICATE = "duplicate"
RESYNC = "resync"
REJECTED = "rejected"


@dataclass
class Frame:
    """One received copy of a radio frame, with where and how it was heard."""

    data: bytes
    path: str  # "lora" | "wifi"
    rssi: float | None = None
    snr: float | None = None
    at: float | None = None  # wall-clock receive time; filled in by the pipeline if None
    source: str = ""  # client address or serial port, for logs


@dataclass
class Outcome:
    status: str  # STORED | DUPLICATE | RESYNC | REJECTED
    reason: str | None = None
    downlink: bytes | None = None
    device_id: int | None = None
    counter: int | None = None
    kind: str | None = None
    incident_id: str | None = None
    priority: int = PRIO_OTHER
    event: dict[str, Any] | None = None  # for MQTT, set when stored
    outbox: OutboxItem | None = None  # the dispatch message committed with it (fast lane)
    ack_status: int = frames.STORED  # DELIVERED on a re-ACK once dispatch confirmed it


class LogBudget:
    """A token bucket for log lines: at most ``per_min`` a minute (bursts up to that), and
    how many were held back since the last one that got through. Thread-safe. Used
    wherever outside input can make the gateway log (rejections, serial faults, malformed
    HTTP): a flood must never flood the journal on a Pi's SD card."""

    def __init__(self, per_min: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_min = float(per_min)
        self._tokens = float(per_min)
        self._clock = clock
        self._last = clock()
        self._held = 0
        self._lock = threading.Lock()

    def take(self) -> int | None:
        """None when this line must be dropped; else how many were dropped before it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.per_min,
                               self._tokens + (now - self._last) * self.per_min / 60.0)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                held, self._held = self._held, 0
                return held
            self._held += 1
            return None


class Rejections:
    """Per-reason counters, plus a log budget so a flood never floods the journal.

    The single owner of these counts: the pipeline thread (frames), the event loop (HTTP)
    and the serial reader thread all count here, so every change happens under one lock
    (before, unlocked read-modify-write from two threads could lose counts, and
    ``take_unsaved`` could drop one counted between its read and its reset). Readers get
    copies (``snapshot``)."""

    def __init__(self, log_per_min: int = 20, clock: Callable[[], float] = time.monotonic):
        self._counts: dict[str, int] = {}
        self._unsaved: dict[str, int] = {}
        self._budget = LogBudget(log_per_min, clock)
        self._lock = threading.Lock()

    @property
    def counts(self) -> dict[str, int]:
        """A copy of the totals since start (reason -> count)."""
        return self.snapshot()

    @property
    def unsaved(self) -> dict[str, int]:
        """A copy of the counts not yet written to the store."""
        with self._lock:
            return dict(self._unsaved)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def count(self, reason: str, detail: str = "", n: int = 1, **fields: Any) -> None:
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + n
            self._unsaved[reason] = self._unsaved.get(reason, 0) + n
        held = self._budget.take()
        if held is not None:
            extra = {"reason": reason, **fields}
            if held:
                extra["suppressed"] = held
            log.warning("rejected %s%s", reason, f": {detail}" if detail else "",
                        extra={"fields": extra})

    def take_unsaved(self) -> dict[str, int]:
        with self._lock:
            out, self._unsaved = self._unsaved, {}
        return out

    def restore_unsaved(self, counts: dict[str, int]) -> None:
        with self._lock:
            for r, n in counts.items():
                self._unsaved[r] = self._unsaved.get(r, 0) + n


PayloadBuilder = Callable[..., dict[str, Any]]


_UNKNOWN_SITE = SiteRecord("(device removed from registry)", "shop", "", 0.0, 0.0)


class PayloadFailed(Exception):
    """Not even a minimal dispatch body could be built for a stored event."""


def _safe_text(value: Any, limit: int = 500) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _safe_site(site: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The site with every field the payload schema would refuse replaced; and their names."""
    out: dict[str, Any] = {}
    replaced: list[str] = []
    name = _safe_text(site.get("name"))
    out["name"] = name or "(site name unavailable)"
    kind = site.get("kind")
    out["kind"] = kind if kind in dispatch_payload.SITE_KINDS else "shop"
    for k in ("address", "contact", "phone"):
        v = _safe_text(site.get(k))
        out[k] = v if v is not None else ""
    for k, lim in (("lat", 90.0), ("lon", 180.0)):
        v = site.get(k)
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) \
            and -lim <= v <= lim
        out[k] = float(v) if ok else 0.0
    for k in ("name", "kind", "address", "contact", "phone", "lat", "lon"):
        if out[k] != site.get(k):
            replaced.append(f"site.{k}")
    return out, replaced


class _Dev:
    """A registered device as the hot path needs it: key, key generation, replay window,
    supervision interval. Site and contact details stay in SQLite and are read only when an
    incident is stored (rare), which keeps 10,000 devices within the Pi's memory budget."""

    __slots__ = ("key", "window", "supervision_s", "key_gen")

    def __init__(self, key: bytes, window: replay.ReplayWindow, supervision_s: int,
                 key_gen: int = 1):
        self.key = key
        self.window = window
        self.supervision_s = supervision_s
        self.key_gen = key_gen


def incident_id_for(device_id: int, counter: int, event: str, key_gen: int = 1) -> str:
    """Same on every gateway that heard the incident's first frame (dispatch_payload's rule:
    device, first counter, event kind, and the key generation from the second on)."""
    return dispatch_payload.make_incident_id(device_id, counter, event, key_gen)


def resync_counter(highest: int) -> int | None:
    """First counter of the epoch after the highest one seen; None when the highest epoch
    is the last one (0xFFFF): no counter above it exists, so no RESYNC can help and the
    device must be rekeyed (docs/protocol.md, "The top of the counter space")."""
    epoch, _ = frames.split_counter(max(highest, 0))
    if epoch >= 0xFFFF:
        return None
    return frames.make_counter(epoch + 1, 0)


class Pipeline:
    def __init__(self, store: Store, gateway_id: str, *, replay_size: int = 64,
                 incident_window_s: float = 300.0, rejections: Rejections | None = None,
                 payload_builder: PayloadBuilder | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.gateway_id = gateway_id
        self.replay_size = replay_size
        self.incident_window_s = incident_window_s
        self.rejections = rejections or Rejections()
        self.build_payload = payload_builder or build_payload
        self.clock = clock
        self.devices: dict[int, _Dev] = {}
        self.generation = -1
        self.stats = {"stored": 0, "duplicate": 0, "resync": 0, "rejected": 0,
                      "payload_degraded": 0, "acked_delivered": 0, "counter_exhausted": 0}
        self.reload_devices()

    # -- registry cache -------------------------------------------------------------------

    def reload_devices(self) -> None:
        """(Re)load keys and replay windows from the DB (at start, and after CLI changes)."""
        self.generation = self.store.registry_generation()
        states = self.store.device_states()
        devices: dict[int, _Dev] = {}
        for device_id, key, supervision_s, key_gen in self.store.device_keys():
            st = states.get(device_id)
            win = replay.ReplayWindow(self.replay_size)
            if st is not None and st.replay_highest >= 0:
                win = replay.ReplayWindow(self.replay_size, st.replay_highest,
                                          st.replay_bitmap & ((1 << self.replay_size) - 1))
            devices[device_id] = _Dev(key, win, supervision_s, key_gen)
        self.devices = devices

    def maybe_reload(self) -> bool:
        """Reload when the registry changed (a CLI's import, rekey or remove bumps its
        generation in the same commit). Called by the daemon every 2 s and at the start of
        every batch, inside the batch's write transaction: no rekey can commit between this
        check and the batch's commit, so a rekeyed device's frames are judged with its new
        key, generation and (restarted) window, never the cached old ones."""
        if self.store.registry_generation() != self.generation:
            self.reload_devices()
            return True
        return False

    # -- processing -------------------------------------------------------------------------

    def process(self, frame: Frame) -> Outcome:
        return self.process_batch([frame])[0]

    def _reject(self, f: Frame, reason: str, detail: str = "",
                device_id: int | None = None) -> Outcome:
        self.rejections.count(reason, detail, path=f.path, source=f.source,
                              device_id=device_id)
        self.stats["rejected"] += 1
        return Outcome(REJECTED, reason, device_id=device_id)

    def _verify(self, f: Frame) -> tuple[_Dev, frames.Uplink] | Outcome:
        try:
            up = frames.decode_uplink(f.data)
        except ProtocolError as e:
            return self._reject(f, e.reason, e.detail)
        dev = self.devices.get(up.device_id)
        if dev is None:
            return self._reject(f, UNKNOWN_DEVICE, f"0x{up.device_id:08X}", up.device_id)
        try:
            frames.verify(dev.key, frames.DIR_UP, f.data)
        except ProtocolError as e:
            return self._reject(f, e.reason, f"device 0x{up.device_id:08X}", up.device_id)
        return dev, up

    def process_batch(self, batch: list[Frame]) -> list[Outcome]:
        """Process frames in arrival order; all stores share one durable transaction."""
        now = self.clock()
        outcomes: list[Outcome | None] = [None] * len(batch)
        touched: dict[int, tuple[int, int]] = {}  # device -> window state before the batch
        acks: list[tuple[int, _Dev, frames.Uplink, Outcome]] = []
        unsaved: dict[str, int] = {}
        try:
            with self.store.transaction():
                self.maybe_reload()
                for i, f in enumerate(batch):
                    if f.at is None:
                        f.at = now
                    checked = self._verify(f)
                    if isinstance(checked, Outcome):
                        outcomes[i] = checked
                        continue
                    dev, up = checked
                    if up.device_id not in touched:
                        touched[up.device_id] = dev.window.state()
                    out = self._store_one(f, dev, up)
                    outcomes[i] = out
                    if out.status != REJECTED:
                        acks.append((i, dev, up, out))
                # Everything counted so far (this batch's rejections and those the loop and
                # the serial reader counted meanwhile) is taken at once, under the lock.
                unsaved = self.rejections.take_unsaved()
                self.store.add_rejections(unsaved, now)
        except Exception as e:
            # Nothing was committed: restore in-memory windows and do not acknowledge.
            for dev_id, (highest, bitmap) in touched.items():
                d = self.devices.get(dev_id)
                if d is not None:
                    d.window.highest, d.window.bitmap = highest, bitmap
            self.rejections.restore_unsaved(unsaved)
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
                # Counted like any rejection (docs/gateway.md): the status API and diag show
                # why buttons get 503s (e.g. a full disk), not just the log.
                self.rejections.count(INTERNAL, f"store could not commit: {e}",
                                      path=batch[i].path, source=batch[i].source,
                                      device_id=out.device_id)
                self.stats["rejected"] += 1
            return [o for o in outcomes if o is not None]
        # Committed: now, and only now, sign the downlinks.
        for _, dev, up, out in acks:
            if out.status == RESYNC:
                down = frames.Downlink(frames.RESYNC, up.device_id, out.counter or 0, 0)
            else:
                down = frames.Downlink(frames.ACK, up.device_id, up.counter, out.ack_status)
                if out.ack_status == frames.DELIVERED:
                    self.stats["acked_delivered"] += 1
            out.downlink = frames.encode_downlink(dev.key, down)
            self.stats[out.status] += 1
        return [o for o in outcomes if o is not None]

    def _store_one(self, f: Frame, dev: _Dev, up: frames.Uplink) -> Outcome:
        st = self.store
        at = float(f.at or 0.0)
        kind_name = frames.TYPE_NAMES[up.kind]
        verdict = dev.window.check(up.counter)
        existing = None
        if verdict != replay.NEW:
            existing = st.find_event(up.device_id, up.counter, dev.key_gen)
        if existing is not None or verdict == replay.DUPLICATE:
            # A copy of something stored: record the path, re-acknowledge, never forward.
            # The re-ACK says DELIVERED once dispatch confirmed this event (contract C1):
            # the button, asking again after STORED, learns the police have it.
            delivered = False
            if existing is not None:
                st.add_reception(existing[0], f.path, f.rssi, f.snr, at, True)
                delivered = st.dispatch_confirmed(existing[0], existing[1])
            st.heard(up.device_id, at, f.path, f.rssi, f.snr, up.battery_mv, up.low_battery)
            return Outcome(DUPLICATE, None, device_id=up.device_id, counter=up.counter,
                           kind=kind_name, incident_id=existing[1] if existing else None,
                           ack_status=frames.DELIVERED if delivered else frames.STORED)
        if verdict == replay.STALE:
            nxt = resync_counter(dev.window.highest)
            if nxt is None:
                return self._exhausted(f, dev, up, kind_name, at)
            self.rejections.count(REPLAY, f"device 0x{up.device_id:08X} counter "
                                  f"0x{up.counter:08X} behind window; RESYNC to 0x{nxt:08X}",
                                  path=f.path, source=f.source, device_id=up.device_id)
            return Outcome(RESYNC, REPLAY, device_id=up.device_id, counter=nxt,
                           kind=kind_name)
        # New frame.
        incident_id = None
        prio = PRIO_OTHER
        event_fields: dict[str, Any] | None = None
        outbox: OutboxItem | None = None
        window_before = dev.window.state()
        if up.kind in EVENT_KIND:
            # Events only (rare; heartbeats skip it): lets _payload's last resort undo just
            # this frame inside the batch's transaction.
            st.db.execute("SAVEPOINT frame")
            event, code, prio = EVENT_KIND[up.kind]
            since = at - self.incident_window_s
            found = st.open_incident(up.device_id, kind_name, since, dev.key_gen)
            if found is not None and self.incident_window_s > 0:
                incident_id, first_heard, _ = found
                press_count = st.touch_incident(incident_id, at)
                first_counter = int(incident_id.split("-")[1], 16)
            else:
                incident_id = incident_id_for(up.device_id, up.counter, event, dev.key_gen)
                first_counter = up.counter
                first_heard, press_count = at, 1
                st.create_incident(incident_id, up.device_id, kind_name, at, dev.key_gen)
            event_fields = {"incident_id": incident_id, "event": event, "contact_id": code,
                            "press_count": press_count}
        event_id = st.insert_event(up.device_id, up.counter, kind_name, incident_id, at,
                                   up.attempt, up.flags, up.battery_mv, f.data, dev.key_gen)
        st.add_reception(event_id, f.path, f.rssi, f.snr, at, False)
        dev.window.accept(up.counter)
        highest, bitmap = dev.window.state()
        st.save_replay(up.device_id, highest, bitmap)
        st.heard(up.device_id, at, f.path, f.rssi, f.snr, up.battery_mv, up.low_battery)
        if incident_id is not None and event_fields is not None:
            rec = st.get_device(up.device_id)
            if rec is None:  # removed between reload and now: still store and forward
                rec = DeviceRecord(up.device_id, dev.key, _UNKNOWN_SITE, "(unregistered)")
            try:
                payload = self._payload(
                    incident_id=incident_id,
                    event=event_fields["event"],
                    gateway_id=self.gateway_id,
                    first_heard=first_heard,
                    last_heard=at,
                    site=rec.site.to_dict(),
                    device={"id": rec.device_id, "label": rec.label,
                            "battery_mv": up.battery_mv, "low_battery": up.low_battery,
                            "firmware": rec.firmware},
                    paths=[{"path": f.path, "rssi": f.rssi, "snr": f.snr, "at": at}],
                    press_count=event_fields["press_count"],
                    counter=first_counter,
                    frame_counter=up.counter,  # a repeat press is a new document for dispatch
                    key_gen=dev.key_gen,
                )
            except PayloadFailed as e:
                # Undo this frame only (event, incident, reception, replay state): the rest
                # of the batch commits; the button is not acknowledged and retries.
                st.db.execute("ROLLBACK TO frame")
                st.db.execute("RELEASE frame")
                dev.window.highest, dev.window.bitmap = window_before
                self.rejections.count(PAYLOAD_ERROR, str(e), path=f.path, source=f.source,
                                      device_id=up.device_id)
                self.stats["rejected"] += 1
                return Outcome(REJECTED, PAYLOAD_ERROR, device_id=up.device_id,
                               counter=up.counter, kind=kind_name)
            st.db.execute("RELEASE frame")
            item_id = st.enqueue(incident_id, prio, payload, at, event_id)
            outbox = OutboxItem(item_id, incident_id, prio, payload, 0, at)
        return Outcome(STORED, None, device_id=up.device_id, counter=up.counter, kind=kind_name,
                       incident_id=incident_id, priority=prio, outbox=outbox,
                       event={"device_id": up.device_id, "counter": up.counter,
                              "type": kind_name, "path": f.path, "rssi": f.rssi,
                              "snr": f.snr, "battery_mv": up.battery_mv, "at": at,
                              "incident_id": incident_id})


    def _exhausted(self, f: Frame, dev: _Dev, up: frames.Uplink, kind_name: str,
                   at: float) -> Outcome:
        """A verified frame below the window of a device whose highest epoch is 0xFFFF: a
        RESYNC would have to carry a counter above 0xFFFFFFFF, so there is none. Refuse
        the frame (no ACK: nothing was stored) and raise one ``device_trouble`` event
        naming the device, stored and forwarded like other trouble; later frames are only
        counted. The fix is a new key (``panictool rekey``), which resets the counter."""
        st = self.store
        self.stats["counter_exhausted"] += 1
        self.stats["rejected"] += 1
        self.rejections.count(COUNTER_EXHAUSTED,
                              f"device 0x{up.device_id:08X} counter 0x{up.counter:08X} is "
                              "below its window at the last epoch 0xFFFF: rekey it "
                              "(panictool rekey)", path=f.path, source=f.source,
                              device_id=up.device_id)
        out = Outcome(REJECTED, COUNTER_EXHAUSTED, device_id=up.device_id, counter=up.counter,
                      kind=kind_name)
        incident_id = dispatch_payload.make_incident_id(up.device_id, dev.window.highest,
                                                        "device_trouble", dev.key_gen)
        if st.incident(incident_id) is not None:
            return out  # already raised for this device and counter state
        rec = st.get_device(up.device_id)
        if rec is None:
            return out
        detail = (f"Button 0x{up.device_id:08X} ({rec.label}) cannot be heard any more: its "
                  f"counter space is used up (highest counter 0x{dev.window.highest:08X}, "
                  f"epoch 0xFFFF), so the gateway refuses its frames, alarms included "
                  f"(last refused: {kind_name}). An installer must rekey it with "
                  "`panictool rekey`.")
        st.db.execute("SAVEPOINT trouble")
        try:
            st.create_incident(incident_id, up.device_id, "device_trouble", at, dev.key_gen)
            payload = dispatch_payload.build_payload(
                incident_id=incident_id, event="device_trouble", gateway_id=self.gateway_id,
                first_heard=at, site=rec.site.to_dict(),
                device={"id": up.device_id, "label": rec.label, "battery_mv": up.battery_mv,
                        "low_battery": up.low_battery, "firmware": rec.firmware},
                paths=[{"path": f.path, "rssi": f.rssi, "snr": f.snr, "at": at}],
                counter=dev.window.highest, detail=detail[:500], key_gen=dev.key_gen)
            prio = dispatch_payload.priority_for("device_trouble")
            item_id = st.enqueue(incident_id, prio, payload, at)
        except Exception:
            # The frame is refused either way; the next one tries to raise it again.
            st.db.execute("ROLLBACK TO trouble")
            st.db.execute("RELEASE trouble")
            log.exception("could not raise device_trouble for 0x%08X", up.device_id)
            return out
        st.db.execute("RELEASE trouble")
        log.error("device 0x%08X: counter space exhausted; device_trouble raised, rekey it "
                  "with panictool rekey", up.device_id,
                  extra={"fields": {"device_id": up.device_id, "incident_id": incident_id}})
        out.incident_id = incident_id
        out.priority = prio
        out.outbox = OutboxItem(item_id, incident_id, prio, payload, 0, at)
        return out

    def _payload(self, **kw: Any) -> dict[str, Any]:
        """The dispatch body for a stored event, degraded rather than lost.

        1. the configured builder with everything; 2. on any exception, the same builder
        with the site's unusable fields replaced; 3. the reference builder with the bare
        minimum (device id, battery, event, times). A degraded body says so in ``detail``
        ("DEGRADED: ..."; the schema allows no extra field), is logged at error level and
        counted (``payload_degraded`` in the status API's frames). Raises PayloadFailed only
        when even step 3 fails (a gateway-wide fault such as an invalid gateway id).
        """
        try:
            return self.build_payload(**kw)
        except Exception as e:  # a bug or bad registry data must not lose a stored alarm
            first = f"{type(e).__name__}: {e}"
        site, replaced = _safe_site(kw["site"])
        dev = kw["device"]
        attempts = [
            (self.build_payload, {**kw, "site": site}, replaced),
            (dispatch_payload.build_payload, {
                **kw, "site": site, "paths": [],
                "device": {"id": dev["id"], "label": "", "firmware": None,
                           "low_battery": bool(dev.get("low_battery")),
                           "battery_mv": min(max(int(dev.get("battery_mv") or 0), 0), 10000)}},
             [*replaced, "device.label", "device.firmware", "paths"]),
        ]
        for builder, args, parts in attempts:
            note = (f"DEGRADED: the gateway could not build this message normally ({first}); "
                    f"replaced: {', '.join(parts) or 'nothing'}. Verify site and caller by "
                    "phone.")
            try:
                body = builder(**{**args, "detail": note[:500]})
            except Exception as e:
                last = f"{type(e).__name__}: {e}"
                continue
            self.stats["payload_degraded"] += 1
            log.error("dispatch payload for %s degraded: %s", kw["incident_id"], first,
                      extra={"fields": {"incident_id": kw["incident_id"], "replaced": parts}})
            return body
        raise PayloadFailed(f"{first}; minimal body: {last}")


def frame_priority(data: bytes) -> int:
    """Processing priority read from the (unverified) type nibble: alarms jump the queue.
    A forged type gains nothing: it is verified like any other frame."""
    if not data:
        return PRIO_OTHER + 1
    kind = data[0] & 0x0F
    if kind == frames.ALARM:
        return PRIO_ALARM
    if kind in EVENT_KIND:
        return PRIO_EVENT
    return PRIO_OTHER


class Processor:
    """Async front of the pipeline: a priority queue (alarms first) drained in batches on
    one dedicated thread, so fsync never stalls the event loop serving HTTP and serial.
    ``executor``: that thread (the daemon passes its store service's writer lane, the only
    thread that writes; by default the processor starts its own).

    ``submit`` resolves once the frame's batch is committed (or rejected). ``on_commit`` is
    called in the event loop with each batch's outcomes (forwarder wake-up, MQTT events);
    ``on_judged`` with the batch's frames and outcomes, every verdict (the daemon's
    recent-frames ring for ``GET /v1/frames``).
    """

    def __init__(self, pipeline: Pipeline, batch_max: int = 256,
                 on_commit: Callable[[list[Outcome]], None] | None = None,
                 on_judged: Callable[[list[Frame], list[Outcome]], None] | None = None,
                 linger_s: float = 0.0, executor: Executor | None = None) -> None:
        self.pipeline = pipeline
        self.batch_max = batch_max
        self.linger_s = linger_s
        self._urgent = asyncio.Event()  # ends a linger: an alarm/event, or a full batch
        self._last_routine_n = 0  # routine frames in the last batch that had any
        self._lingered = -1  # seq of the frame that already waited once (never twice)
        self.on_commit = on_commit
        self.on_judged = on_judged
        self.queue: asyncio.PriorityQueue[tuple[int, int, Frame, asyncio.Future[Outcome]]] = (
            asyncio.PriorityQueue()
        )
        self._seq = itertools.count()
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="pipeline")
        self.in_flight = 0
        self.batches = 0
        self.largest_batch = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def run_sync(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn`` on the pipeline thread (the only thread touching its store)."""
        return asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def submit_nowait(self, frame: Frame) -> asyncio.Future[Outcome]:
        if frame.at is None:
            frame.at = self.pipeline.clock()
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._idle.clear()
        prio = frame_priority(frame.data)
        self.queue.put_nowait((prio, next(self._seq), frame, fut))
        if prio < PRIO_OTHER or self.queue.qsize() + 1 >= self.batch_max:  # + a lingering head
            self._urgent.set()
        return fut

    async def submit(self, frame: Frame) -> Outcome:
        return await asyncio.shield(self.submit_nowait(frame))

    @property
    def depth(self) -> int:
        return self.queue.qsize() + self.in_flight

    async def run(self) -> None:
        while True:
            head = await self.queue.get()
            if head[0] >= PRIO_OTHER and head[1] != self._lingered and self._dense():
                head = await self._linger(head)
            batch = [head]
            alarms_only = batch[0][0] == PRIO_ALARM
            while len(batch) < self.batch_max and not self.queue.empty():
                item = self.queue.get_nowait()
                if alarms_only and item[0] != PRIO_ALARM:
                    # An alarm's commit does not wait for heartbeats behind it: one more
                    # fsync per alarm, a few milliseconds less for the alarm.
                    self.queue.put_nowait(item)
                    break
                batch.append(item)
            self.in_flight = len(batch)
            routine = sum(1 for b in batch if b[0] >= PRIO_OTHER)
            if routine:
                self._last_routine_n = routine
            try:
                outs = await self.run_sync(self.pipeline.process_batch, [b[2] for b in batch])
            except Exception:  # process_batch handles store errors; this is a bug guard
                log.exception("pipeline batch failed")
                outs = [Outcome(REJECTED, INTERNAL) for _ in batch]
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(batch))
            for (_, _, _, fut), out in zip(batch, outs, strict=True):
                if not fut.done():
                    fut.set_result(out)
            self.in_flight = 0
            if self.on_commit is not None:
                try:
                    self.on_commit(outs)
                except Exception:
                    log.exception("on_commit hook failed")
            if self.on_judged is not None:
                try:
                    self.on_judged([b[2] for b in batch], outs)
                except Exception:
                    log.exception("on_judged hook failed")
            if self.queue.empty():
                self._idle.set()

    def _dense(self) -> bool:
        """Routine frames are arriving faster than one commit each: the last routine batch
        held several, or another one is already queued. A single sender that waits for each
        ACK (one frame per batch, nothing queued) never lingers: nothing would join it."""
        return self.linger_s > 0 and (self._last_routine_n > 1 or not self.queue.empty())

    async def _linger(self, head: tuple[int, int, Frame, asyncio.Future[Outcome]],
                      ) -> tuple[int, int, Frame, asyncio.Future[Outcome]]:
        """Hold a routine batch up to ``linger_s`` so it commits with the frames right behind
        it: under 1,000 heartbeats/s one commit per ~10 frames instead of per 2-4, which
        leaves the interpreter to the event loop and to alarms. An alarm or event (or a full
        batch) ends the wait at once and goes first."""
        self._urgent.clear()
        self._lingered = head[1]
        if self.queue.qsize() + 1 < self.batch_max:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.linger_s):
                    await self._urgent.wait()
        self.queue.put_nowait(head)  # same (priority, seq): its place in the queue is kept
        return self.queue.get_nowait()

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued is processed; False if ``timeout`` ran out."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        if self._own_executor:
            self.executor.shutdown(wait=True)
