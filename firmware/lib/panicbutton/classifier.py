"""Turns debounced button edges (from ``keypad``) into ALARM / TEST / CANCEL events.

Patterns (docs/firmware.md shows them to installers):

* ALARM: hold for ``hold_s`` (default 1.5 s). Fires while still held, the moment the
  threshold is reached, whatever clicks came before: a panicking user gets an alarm.
* TEST: exactly ``test_clicks`` (5) short presses, each gap under ``gap_s`` (1 s), then
  ``gap_s`` of quiet.
* CANCEL (only when enabled): exactly ``cancel_clicks`` (8) short presses, then quiet.
* Anything else (a bump, 2-4 or 6-7 clicks, 9+ clicks) does nothing.
"""

from panicproto import ALARM, CANCEL, TEST


class Classifier:
    def __init__(self, hold_s=1.5, gap_s=1.0, test_clicks=5, cancel_clicks=0):
        self.hold_s = hold_s
        self.gap_s = gap_s
        self.test_clicks = test_clicks
        self.cancel_clicks = cancel_clicks
        self._down_at = None
        self._fired = False
        self._clicks = 0
        self._last_up = 0.0

    def _finish_clicks(self):
        n = self._clicks
        self._clicks = 0
        if n == self.test_clicks:
            return TEST
        if self.cancel_clicks and n == self.cancel_clicks:
            return CANCEL
        return None

    def feed(self, pressed, t):
        """One debounced edge at time ``t`` (seconds). Returns an event or None."""
        if pressed:
            if self._down_at is not None:
                return None  # duplicate press edge
            event = None
            if self._clicks and t - self._last_up > self.gap_s:
                event = self._finish_clicks()
            self._down_at = t
            self._fired = False
            return event
        if self._down_at is None:
            return None  # release without press (e.g. held at boot, already handled)
        held = t - self._down_at
        self._down_at = None
        if self._fired:
            self._fired = False
            return None
        if held >= self.hold_s:  # the update() tick missed the threshold
            self._clicks = 0
            return ALARM
        self._clicks += 1
        self._last_up = t
        return None

    def update(self, now):
        """Call often (every loop): fires ALARM at the hold threshold and ends clicks."""
        if self._down_at is not None:
            if not self._fired and now - self._down_at >= self.hold_s:
                self._fired = True
                self._clicks = 0
                return ALARM
            return None
        if self._clicks and now - self._last_up >= self.gap_s:
            return self._finish_clicks()
        return None

    def busy(self):
        """True while a press or a click sequence is in progress (do not sleep deeply)."""
        return self._down_at is not None or self._clicks > 0

    def wake_pressed(self, t):
        """The board woke from deep sleep because the button went down at about ``t``."""
        if self._down_at is None:
            self._down_at = t
            self._fired = False
