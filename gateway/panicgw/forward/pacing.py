"""When to try dispatch again after a failure: one global pause, not one retry per message.

A down dispatch gets one probe per backoff step, not one POST per queued item. The probe is
the most urgent waiting message itself (one request per probe, nothing extra for dispatch),
so the first probe that succeeds delivers it. While an alarm waits, the step is short
(``alarm_probe_s``, default 2.5 s +-20 %: about 24 small requests a minute), so an alarm
reaches dispatch within a few seconds of dispatch coming back (issue 11.10; the exponential
steps of up to 45 s made it 41-43 s); with no alarm waiting the steps grow to
``alarm_backoff_max_s`` (30 s) +-50 %. A ``Retry-After`` from dispatch is honoured, up to
that cap.
"""

from __future__ import annotations

import random

from panicgw.store import PRIO_ALARM


class Pacing:
    """The forwarder's state of dispatch: failing or not, paused until when, and whether an
    alarm is among what waits."""

    def __init__(self, *, backoff_base_s: float, backoff_max_s: float,
                 alarm_backoff_max_s: float, alarm_probe_s: float,
                 rng: random.Random) -> None:
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.alarm_backoff_max_s = alarm_backoff_max_s
        self.alarm_probe_s = alarm_probe_s
        self._rng = rng
        self.pause_until = 0.0
        self.failures_in_row = 0
        self.alarm_waiting = False  # an alarm failed during this outage and is not delivered

    def healthy(self, now: float) -> bool:
        """Dispatch answered the last attempt and no pause is running."""
        return now >= self.pause_until and not self.failures_in_row

    def backoff(self, attempts: int, priority: int) -> float:
        """Exponential, jittered +-50 %, capped lower for alarms."""
        cap = self.alarm_backoff_max_s if priority == PRIO_ALARM else self.backoff_max_s
        base = min(cap, self.backoff_base_s * (2 ** min(attempts, 30)))
        return base * self._rng.uniform(0.5, 1.5)

    def failed(self, priority: int, retry_after: float | None, now: float,
               alarm_in_flight: bool) -> float:
        """A transport or auth failure of a message of ``priority``: set the global pause and
        return its end (the next probe). Exponential while no alarm waits; a flat, jittered
        step of ``alarm_probe_s`` while one does (the probe is then that alarm: the most
        urgent goes first)."""
        self.failures_in_row += 1
        if priority == PRIO_ALARM:
            self.alarm_waiting = True
        elif priority > PRIO_ALARM and not alarm_in_flight:
            # The probe is always the most urgent message: a failed non-alarm probe means
            # no alarm is waiting (a new one probes at once when it arrives).
            self.alarm_waiting = False
        if self.alarm_waiting:  # a flat step: the alarm goes within one step of recovery
            step = min(self.alarm_probe_s, self.alarm_backoff_max_s)
            pause = step * self._rng.uniform(0.8, 1.2)
        else:
            pause = self.backoff(self.failures_in_row - 1, PRIO_ALARM)
        if retry_after is not None:
            pause = max(pause, min(retry_after, self.alarm_backoff_max_s))
        if self.alarm_waiting and priority == PRIO_ALARM:
            self.pause_until = now + pause  # may shorten a longer pause a non-alarm set
        else:
            self.pause_until = max(self.pause_until, now + pause)
        return self.pause_until

    def recovered(self) -> int:
        """Dispatch delivered something: no pause, nothing failing. Returns how many
        failures in a row came before."""
        failures, self.failures_in_row = self.failures_in_row, 0
        self.pause_until = 0.0
        self.alarm_waiting = False
        return failures
