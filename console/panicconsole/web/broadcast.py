"""Fans committed changes out to every open stream (one bounded queue per stream): a reader
that falls behind is cut, reconnects and replays from the database instead of holding the
others up."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

SUBSCRIBER_QUEUE = 2000

Rows = list[dict[str, Any]]


class Broadcaster:
    def __init__(self) -> None:
        self.subscribers: dict[asyncio.Queue[Rows | None], dict[str, Any]] = {}

    def subscribe(self, who: dict[str, Any]) -> asyncio.Queue[Rows | None]:
        q: asyncio.Queue[Rows | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.subscribers[q] = who
        return q

    def unsubscribe(self, q: asyncio.Queue[Rows | None]) -> None:
        self.subscribers.pop(q, None)

    def publish(self, rows: Rows) -> None:
        for q in list(self.subscribers):
            try:
                q.put_nowait(rows)
            except asyncio.QueueFull:  # a stuck reader: cut it, it reconnects and replays
                self.subscribers.pop(q, None)
                with contextlib.suppress(asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait(None)

    def end_all(self) -> None:
        """End every stream (shutdown stays quick)."""
        for q in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
