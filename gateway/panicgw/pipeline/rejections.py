"""Why frames and requests were refused: per-reason counts, and a bounded log of them.

Every rejection gets a reason and is counted; the log gets at most ``log_per_min`` lines a
minute (panicgw.ratelimit), because a flood of forgeries or malformed requests must never
flood the journal on a Pi's SD card.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from panicgw.ratelimit import Clock, LogBudget

log = logging.getLogger("panicgw.pipeline")


class Rejections:
    """Per-reason counters, plus a log budget so a flood never floods the journal.

    The single owner of these counts: the pipeline thread (frames), the event loop (HTTP)
    and the serial reader thread all count here, so every change happens under one lock
    (before, unlocked read-modify-write from two threads could lose counts, and
    ``take_unsaved`` could drop one counted between its read and its reset). Readers get
    copies (``snapshot``)."""

    def __init__(self, log_per_min: int = 20, clock: Clock = time.monotonic):
        self._counts: dict[str, int] = {}
        self._unsaved: dict[str, int] = {}
        self._budget = LogBudget(log_per_min, clock)
        self._lock = threading.Lock()

    @property
    def counts(self) -> dict[str, int]:
        """A copy of the totals since start (reason -> count)."""
        return self.snapshot()

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
