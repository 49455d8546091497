"""One exchange at a time per receiver, the most urgent waiter first.

DC-09 is stop-and-wait: a message, then its reply. Receivers such as pysiaalarm read one
message per read and answer it before the next, so two messages in flight on one connection
can be read as one garbled line. Waiters are served by priority (``store.PRIO_ALARM`` = 0
first), then in arrival order: an alarm waits behind at most the one exchange in flight.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class PriorityTurns:
    def __init__(self) -> None:
        self._busy = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for *_, f in self._waiters if not f.done())

    @asynccontextmanager
    async def turn(self, priority: int) -> AsyncIterator[None]:
        if self._busy or self.waiting:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (priority, next(self._order), fut))
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():  # the turn was ours: pass it on
                    self._release()
                raise
        self._busy = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            *_, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # handed over: still busy
                return
        self._busy = False
