"""The daemon's store service: one writer, named calls, and no SQLite on the event loop.

Every write of the running gateway goes through ONE connection on ONE thread, the writer
lane: the pipeline's batches (panicgw.pipeline runs them there), supervision's events, the
forwarder's delivery records, heartbeat pruning. One writer means SQLite's write lock is
never contended: its busy handler sleeps 1-100 ms, and with two writers those sleeps were
the alarm latency tail. Writers never checkpoint inline either (an fsync'ing checkpoint
would stall an alarm's commit behind heartbeats): :meth:`StoreService.checkpoint` runs on a
lane of its own.

Reads run on read lanes: a read-only connection (``mode=ro``) and a thread each, one lane
per reader that must not wait for another (the status API, the forwarder's outbox polls,
supervision's scan of 10,000 devices), never on the event loop, where a synchronous read
would stall HTTP and serial ACKs behind the disk. WAL lets them read while the writer
writes.

A call names its lane and its query: ``await service.write(Store.prune_heartbeats, t)``,
``await service.read("status", Store.outbox_counts)``; the function gets the lane's
:class:`~panicgw.store.Store` first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from panicgw.ratelimit import LogBudget
from panicgw.store.db import Store
from panicgw.store.outbox import OutboxItem
from panicgw.store.routes import RouteItem

log = logging.getLogger("panicgw.daemon")  # the checkpointer logs as the daemon did

P = ParamSpec("P")
T = TypeVar("T")

STATUS = "status"  # the status API, MQTT status, supervision's start-up reads
FORWARDER = "forwarder-store"  # the forwarder's outbox polls
SUPERVISION = "supervision"  # supervision's candidate scan


class Lane:
    """One connection and the one thread that uses it."""

    def __init__(self, name: str, store: Store) -> None:
        self.name = name
        self.store = store
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=name)

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn(*args)`` on this lane's thread (for code that holds :attr:`store` itself,
        like the pipeline on the writer lane)."""
        return asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def call(self, fn: Callable[Concatenate[Store, P], T], *args: P.args,
                   **kwargs: P.kwargs) -> T:
        """``fn(store, *args, **kwargs)`` on this lane's thread."""
        return await self.run(functools.partial(fn, self.store, *args, **kwargs))

    def close(self) -> None:
        """Close the connection on its own thread, then end the thread."""
        self.executor.submit(self.store.close).result()
        self.executor.shutdown(wait=True)


class StoreService:
    """The daemon's DB: create and migrate it, then hand out lanes. See the module doc."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # The only connection that creates and migrates the DB; the others open it as is.
        self.writer = Lane("store-writer", Store(self.path, check_same_thread=False,
                                                 autocheckpoint=False))
        self._readers: dict[str, Lane] = {}
        self._checkpoints: Lane | None = None

    def reader(self, name: str) -> Lane:
        """The read lane ``name`` (opened on first use)."""
        lane = self._readers.get(name)
        if lane is None:
            lane = Lane(name, Store(self.path, check_same_thread=False, create=False,
                                    readonly=True))
            self._readers[name] = lane
        return lane

    async def write(self, fn: Callable[Concatenate[Store, P], T], *args: P.args,
                    **kwargs: P.kwargs) -> T:
        """``fn(writer store, ...)`` on the writer thread, after every write queued before it."""
        return await self.writer.call(fn, *args, **kwargs)

    async def read(self, lane: str, fn: Callable[Concatenate[Store, P], T], *args: P.args,
                   **kwargs: P.kwargs) -> T:
        """``fn(read-only store, ...)`` on the read lane ``lane``."""
        return await self.reader(lane).call(fn, *args, **kwargs)

    async def checkpoint(self) -> tuple[int, int, int]:
        """A PASSIVE WAL checkpoint on its own connection and thread, off the commit path."""
        if self._checkpoints is None:
            self._checkpoints = Lane("checkpoint", Store(self.path, check_same_thread=False,
                                                         create=False))
        return await self._checkpoints.call(Store.checkpoint)

    async def checkpoint_forever(self, every_s: float = 1.0) -> None:
        """Checkpoint every ``every_s`` until cancelled. A failing checkpoint (a full disk) is
        logged once with its traceback, then at most one line a minute while it lasts, and
        once more when it recovers."""
        failing_since: float | None = None
        failures = 0
        lines = LogBudget.every(60.0)
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.checkpoint()
            except Exception as e:
                now = time.monotonic()
                failures += 1
                if failing_since is None:
                    failing_since, lines = now, LogBudget.every(60.0)
                    lines.take()  # the traceback is this minute's line
                    log.exception("WAL checkpoint failed")
                elif lines.take() is not None:
                    log.error("WAL checkpoint still failing (%d attempts in %.0f s): %s",
                              failures, now - failing_since, e)
                continue
            if failing_since is not None:
                log.warning("WAL checkpoint recovered after %d failed attempts", failures)
                failing_since, failures = None, 0

    def outbox(self, lane: str = FORWARDER) -> OutboxPort:
        """The forwarder's outbox on this service (see :class:`OutboxPort`)."""
        return OutboxPort(self, lane)

    def route(self, route: str) -> RoutePort:
        """A delivery route's outbox beside dispatch (see :class:`RoutePort`)."""
        return RoutePort(self, route)

    def close(self) -> None:
        """Close every connection, the writer last (its close may checkpoint the WAL)."""
        for lane in (*self._readers.values(), self._checkpoints):
            if lane is not None:
                lane.close()
        self._readers.clear()
        self._checkpoints = None
        self.writer.close()


class OutboxPort:
    """panicgw.forward's ``OutboxStore`` on the service: ``due`` reads on its own lane,
    the delivery records (``delivered``, ``reschedule``, ``dead_letter``) are writes. The
    methods are coroutines: give the forwarder :meth:`call` as its ``call_store``."""

    def __init__(self, service: StoreService, lane: str) -> None:
        self._service = service
        self._lane = lane

    @staticmethod
    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return await fn(*args)

    async def due(self, now: float, limit: int) -> list[OutboxItem]:
        return await self._service.read(self._lane, Store.due, now, limit)

    async def delivered(self, item_id: int, at: float, status: int, body: str) -> None:
        await self._service.write(Store.delivered, item_id, at, status, body)

    async def reschedule(self, item_id: int, at: float, error: str) -> None:
        await self._service.write(Store.reschedule, item_id, at, error)

    async def dead_letter(self, item_id: int, at: float, reason: str) -> None:
        await self._service.write(Store.dead_letter, item_id, at, reason)


class RoutePort:
    """One delivery route's outbox (``sia:<name>``) on the service: ``due`` reads on the
    route's own lane (one route's reads never wait for another's), every record is a write
    through the one writer."""

    def __init__(self, service: StoreService, route: str) -> None:
        self._service = service
        self.route = route
        self._lane = f"route-{route}"

    async def due(self, now: float, limit: int) -> list[RouteItem]:
        return await self._service.read(self._lane, Store.route_due, self.route, now, limit)

    async def take_seq(self, item_id: int | None) -> int:
        return await self._service.write(Store.take_route_seq, self.route, item_id)

    async def last_seq(self) -> int:
        return await self._service.read(self._lane, Store.route_seq, self.route)

    async def delivered(self, item_id: int, at: float, detail: str) -> None:
        await self._service.write(Store.route_delivered, item_id, self.route, at, detail)

    async def reschedule(self, item_id: int, at: float, error: str) -> None:
        await self._service.write(Store.route_reschedule, item_id, self.route, at, error)

    async def dead(self, item_id: int, reason: str) -> None:
        await self._service.write(Store.route_dead, item_id, self.route, reason)
