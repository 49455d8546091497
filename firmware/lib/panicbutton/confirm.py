"""Confirming: after an alarm's STORED ACK, ask for DELIVERED (contract C1).

The same frame (same counter, the next attempt number) goes out again at
``policy.CONFIRM_AT_S`` after the STORED ACK, on every path, with the non-alarm share of
the duty-cycle budget, until DELIVERED or the schedule's end, where it stops asking
without claiming delivery. An unacknowledged alarm goes first (the caller checks).
"""

from panicbutton import policy


class Confirm:
    def __init__(self, hal, sender):
        self.hal = hal
        self.sender = sender
        self.msg = None  # the STORED alarm's Message: ``created`` = when it was STORED,
        # ``attempts`` = the attempt number the next request carries

    def start(self, msg, now):
        msg.created = now
        msg.next_due = now + policy.CONFIRM_AT_S[0]
        self.msg = msg

    def stop(self):
        """DELIVERED arrived, or the alarm was cancelled."""
        self.msg = None

    def step(self, now):
        m = self.msg
        if m is None or m.next_due > now:
            return
        if now >= m.created + policy.CONFIRM_AT_S[-1]:
            self.msg = None
            self.hal.console("PANIC-BUTTON alarm counter=%d stored; delivery not confirmed "
                             "in %d s (stopped asking)" % (m.counter, policy.CONFIRM_AT_S[-1]))
            return
        tried, wait = self.sender.send(m.kind, m.counter, m.attempts, now, 0)
        if self.msg is not m:
            return  # DELIVERED arrived during this request
        if tried:
            m.attempts += 1
            for t in policy.CONFIRM_AT_S:  # the next time; the last entry: stop asking
                if m.next_due <= now and m.created + t > now:
                    m.next_due = m.created + t
        else:
            m.next_due = now + (wait if wait > 1 else 1)
