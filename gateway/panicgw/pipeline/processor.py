"""The pipeline's driver: frames in, one verdict each, stage after stage, a batch at a time.

``Pipeline.process_batch`` takes frames as they came off the bridge or the HTTP server and
returns one ``Outcome`` each, with the downlink to send back. Each frame goes through the
stages in order, each a module of its own:

1. ``verify``: decode, device lookup, tag, and where the counter falls in the replay window;
2. ``dedupe``: a verified copy of something stored is re-acknowledged, never forwarded;
   a counter behind the window gets a signed RESYNC (``verify.resync_counter``), or, at the
   top of the counter space, ``counter_trouble``;
3. ``incident``: an alarm, tamper, cancel or test opens or joins an incident;
4. ``commit``: the frame's rows and dispatch message (``dispatch_body``) in the batch's one
   transaction, and the downlinks signed only after it is on disk.

Each batch starts from the registry as committed (keys, key generations, windows): a rekey
takes effect at the next batch, and no frame verified with the old key can write its window
over the new key's. Every rejection gets a reason, is counted, and is logged at a bounded
rate (``rejections``). ``Processor`` is the asynchronous front: a priority queue (alarms
first) drained in batches on one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from panicgw.forward.payload import build_payload
from panicgw.pipeline import commit, counter_trouble, dedupe
from panicgw.pipeline.dispatch_body import PayloadBuilder, PayloadFailed
from panicgw.pipeline.frame import (
    COUNTER_EXHAUSTED,
    INTERNAL,
    PAYLOAD_ERROR,
    REJECTED,
    REPLAY,
    RESYNC,
    Frame,
    Outcome,
)
from panicgw.pipeline.incident import UPLINK_EVENT, open_or_join
from panicgw.pipeline.rejections import Rejections
from panicgw.pipeline.verify import Device, Refusal, load_devices, resync_counter, verify
from panicgw.store import PRIO_ALARM, PRIO_EVENT, PRIO_OTHER, OutboxItem, Store
from panicproto import frames, replay

log = logging.getLogger("panicgw.pipeline")


class Pipeline:
    """Frames through the stages, one batch per store transaction. Owns the registry cache
    (``devices``) and the verdict counters (``stats``); runs on one thread at a time (the
    Processor's pipeline thread)."""

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
        self.devices: dict[int, Device] = {}
        self.generation = -1
        self.stats = {"stored": 0, "duplicate": 0, "resync": 0, "rejected": 0,
                      "payload_degraded": 0, "acked_delivered": 0, "counter_exhausted": 0}
        self.reload_devices()

    # -- registry cache -------------------------------------------------------------------

    def reload_devices(self) -> None:
        """(Re)load keys and replay windows from the DB (at start, and after CLI changes)."""
        self.generation = self.store.registry_generation()
        self.devices = load_devices(self.store, self.replay_size)

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

    def process_batch(self, batch: list[Frame]) -> list[Outcome]:
        """Process frames in arrival order; all stores share one durable transaction."""
        now = self.clock()
        outcomes: list[Outcome | None] = [None] * len(batch)
        touched: dict[int, tuple[int, int]] = {}  # device -> window state before the batch
        acks: list[commit.Ack] = []
        unsaved: dict[str, int] = {}
        try:
            with self.store.transaction():
                self.maybe_reload()
                for i, f in enumerate(batch):
                    if f.at is None:
                        f.at = now
                    checked = verify(self.devices, f.data)
                    if isinstance(checked, Refusal):
                        outcomes[i] = self._reject(f, *checked)
                        continue
                    dev, up = checked
                    if up.device_id not in touched:
                        touched[up.device_id] = dev.window.state()
                    out = self._judge(f, dev, up)
                    outcomes[i] = out
                    if out.status != REJECTED:
                        acks.append((i, dev, up, out))
                # Everything counted so far (this batch's rejections and those the loop and
                # the serial reader counted meanwhile) is taken at once, under the lock.
                unsaved = self.rejections.take_unsaved()
                self.store.add_rejections(unsaved, now)
        except Exception as e:
            return commit.undo_batch(e, batch, outcomes, acks, self.devices, touched,
                                     self.rejections, unsaved, self.stats)
        commit.sign_downlinks(acks, self.stats)
        return [o for o in outcomes if o is not None]

    def _reject(self, f: Frame, reason: str, detail: str = "",
                device_id: int | None = None) -> Outcome:
        self.rejections.count(reason, detail, path=f.path, source=f.source,
                              device_id=device_id)
        self.stats["rejected"] += 1
        return Outcome(REJECTED, reason, device_id=device_id)

    def _judge(self, f: Frame, dev: Device, up: frames.Uplink) -> Outcome:
        """A verified frame: a copy of something stored, behind the window, or new."""
        at = float(f.at or 0.0)
        verdict = dev.window.check(up.counter)
        existing = dedupe.stored_copy(self.store, dev, up, verdict)
        if existing is not None or verdict == replay.DUPLICATE:
            return dedupe.re_acknowledge(self.store, f, up, existing, at)
        if verdict == replay.STALE:
            return self._stale(f, dev, up, at)
        return self._new(f, dev, up, at)

    def _stale(self, f: Frame, dev: Device, up: frames.Uplink, at: float) -> Outcome:
        """Verified, never stored, older than the window: a signed RESYNC telling the button
        the next counter to use (the next epoch above the highest seen); at the last epoch
        there is none, and the device must be rekeyed (counter_trouble)."""
        kind_name = frames.TYPE_NAMES[up.kind]
        nxt = resync_counter(dev.window.highest)
        if nxt is not None:
            self.rejections.count(REPLAY, f"device 0x{up.device_id:08X} counter "
                                  f"0x{up.counter:08X} behind window; RESYNC to 0x{nxt:08X}",
                                  path=f.path, source=f.source, device_id=up.device_id)
            return Outcome(RESYNC, REPLAY, device_id=up.device_id, counter=nxt,
                           kind=kind_name)
        self.stats["counter_exhausted"] += 1
        self.stats["rejected"] += 1
        self.rejections.count(COUNTER_EXHAUSTED, counter_trouble.describe(up), path=f.path,
                              source=f.source, device_id=up.device_id)
        out = Outcome(REJECTED, COUNTER_EXHAUSTED, device_id=up.device_id, counter=up.counter,
                      kind=kind_name)
        item = counter_trouble.raise_trouble(self.store, self.gateway_id, f, dev, up, at)
        if item is not None:
            out.incident_id, out.priority, out.outbox = item.incident_id, item.priority, item
        return out

    def _new(self, f: Frame, dev: Device, up: frames.Uplink, at: float) -> Outcome:
        """A new frame: stored; an event frame also opens or joins an incident and queues
        its dispatch message."""
        st = self.store
        if up.kind not in UPLINK_EVENT:  # heartbeats: no incident, no dispatch message
            commit.write_frame(st, f, dev, up, None, at)
            return commit.stored(f, up, at)
        window_before = dev.window.state()
        # Events only (rare): lets the dispatch body's last resort undo just this frame
        # inside the batch's transaction.
        try:
            with st.savepoint("frame"):
                inc = open_or_join(st, up, dev.key_gen, at, self.incident_window_s)
                event_id = commit.write_frame(st, f, dev, up, inc.incident_id, at)
                body, degraded = commit.dispatch_body(st, self.build_payload, self.gateway_id,
                                                      f, dev, up, inc, at)
        except PayloadFailed as e:
            # The savepoint undid this frame only (event, incident, reception, replay state;
            # the cached window is put back here): the rest of the batch commits; the
            # button is not acknowledged and retries.
            dev.window.highest, dev.window.bitmap = window_before
            self.rejections.count(PAYLOAD_ERROR, str(e), path=f.path, source=f.source,
                                  device_id=up.device_id)
            self.stats["rejected"] += 1
            return Outcome(REJECTED, PAYLOAD_ERROR, device_id=up.device_id,
                           counter=up.counter, kind=frames.TYPE_NAMES[up.kind])
        if degraded:
            self.stats["payload_degraded"] += 1
        item_id = st.enqueue(inc.incident_id, inc.priority, body, at, event_id)
        outbox = OutboxItem(item_id, inc.incident_id, inc.priority, body, 0, at)
        return commit.stored(f, up, at, inc, outbox)


def frame_priority(data: bytes) -> int:
    """Processing priority read from the (unverified) type nibble: alarms jump the queue.
    A forged type gains nothing: it is verified like any other frame."""
    if not data:
        return PRIO_OTHER + 1
    kind = data[0] & 0x0F
    if kind == frames.ALARM:
        return PRIO_ALARM
    if kind in UPLINK_EVENT:
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
