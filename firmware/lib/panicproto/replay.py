"""Anti-replay sliding window: the highest counter seen plus a bitmap of the ones below it.

Wi-Fi and LoRa copies of one press arrive out of order, so a strict "greater than last"
rule would drop good frames. The window accepts any unseen counter within ``size`` of the
highest, reports a seen one as a duplicate (to be re-acknowledged, never forwarded again)
and anything older as stale. ``check`` does not change state: the gateway calls ``accept``
only once the frame is stored, so a crash in between never loses a counter.
"""

NEW = "new"
DUPLICATE = "duplicate"
STALE = "stale"


class ReplayWindow:
    """Window over counters 0..2**32-1. Bit i of ``bitmap`` means ``highest - i`` was seen."""

    def __init__(self, size=64, highest=-1, bitmap=0):
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.highest = highest
        self.bitmap = bitmap

    def check(self, counter):
        """NEW, DUPLICATE or STALE for ``counter``; never mutates."""
        if counter > self.highest:
            return NEW
        offset = self.highest - counter
        if offset >= self.size:
            return STALE
        if (self.bitmap >> offset) & 1:
            return DUPLICATE
        return NEW

    def accept(self, counter):
        """Mark ``counter`` seen. Returns what ``check`` said before marking."""
        verdict = self.check(counter)
        if verdict != NEW:
            return verdict
        if counter > self.highest:
            shift = counter - self.highest
            if self.highest < 0 or shift >= self.size:
                self.bitmap = 1
            else:
                self.bitmap = ((self.bitmap << shift) | 1) & ((1 << self.size) - 1)
            self.highest = counter
        else:
            self.bitmap |= 1 << (self.highest - counter)
        return NEW

    def state(self):
        """(highest, bitmap) for persistence; restore with ReplayWindow(size, *state)."""
        return self.highest, self.bitmap
