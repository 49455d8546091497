"""Message sequence numbers that never repeat, not even across restarts of the gateway.

Receivers drop a message whose number is not above the last one they accepted from the same
sender on the same topic (:mod:`panicgw.cluster.messages`), so a gateway must never go back:
not after a restart a moment after the last one, not when a Pi without a real-time clock
boots with yesterday's time before NTP has set it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

BITS = 10  # numbers per start value
RESERVE = 3_600_000  # start values (ms) reserved on disk at a time: an hour's worth


class SeqSource:
    """``start << 10 | n``, where ``start`` begins at the wall clock in milliseconds, or
    above what the last run reserved in ``path`` (the gateway's data dir), whichever is
    higher; it moves up by one every 1,024 numbers.

    The file holds the highest start value this run may use: written at start (a reserve of
    an hour ahead), when that reserve is used up, and with the value reached at a clean
    :meth:`close`. A crash costs at most the unused reserve. Numbers stay below 2**53, exact
    in any JSON reader, for two centuries.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        last = 0
        if path is not None:
            try:
                last = int(Path(path).read_text().strip() or 0)
            except (OSError, ValueError):
                last = 0
        self.start = max(last + 1, int(clock() * 1000))
        self._reserved = self.start + RESERVE
        self._save(self._reserved)
        self._n = 0
        self._lock = threading.Lock()

    def _save(self, value: int) -> None:
        if self.path is not None:
            tmp = Path(f"{self.path}.tmp")
            tmp.write_text(f"{value}\n")
            os.replace(tmp, self.path)

    def next(self) -> int:
        with self._lock:
            self._n += 1
            if self._n >= 1 << BITS:
                self.start += 1
                self._n = 1
                if self.start > self._reserved:
                    self._reserved = self.start + RESERVE
                    self._save(self._reserved)
            return self.start << BITS | self._n

    def close(self) -> None:
        """A clean stop: the next run may start right above what this one used."""
        with self._lock:
            self._save(self.start)
