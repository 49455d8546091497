"""The DC-09 sequence number of one receiver: 0001..9999, then 0001 again.

Receivers drop a message whose sequence number they have just seen from the same account:
that is what makes a resend after a lost ACK harmless, and also why a new message must never
reuse the number of the one before it. So the number is taken once per message (the outbox
keeps it with the message and resends under it) and the counter's position outlives a
restart: the caller persists it through ``on_advance`` before the number goes on the wire.
"""

from __future__ import annotations

from collections.abc import Callable

FIRST = 1
LAST = 9999


def check_sequence(seq: int) -> int:
    if not isinstance(seq, int) or isinstance(seq, bool) or not FIRST <= seq <= LAST:
        raise ValueError(f"sequence number must be {FIRST}..{LAST}, got {seq!r}")
    return seq


class SequenceCounter:
    """Hands out sequence numbers in order; ``last`` is the one handed out most recently
    (0 before the first)."""

    def __init__(self, last: int = 0, on_advance: Callable[[int], None] | None = None) -> None:
        if last != 0:
            check_sequence(last)
        self._last = last
        self._on_advance = on_advance

    @property
    def last(self) -> int:
        return self._last

    def next(self) -> int:
        """The next number; ``on_advance`` has run (and may have stored it) when this returns."""
        seq = FIRST if self._last >= LAST else self._last + 1
        if self._on_advance is not None:
            self._on_advance(seq)
        self._last = seq
        return seq
