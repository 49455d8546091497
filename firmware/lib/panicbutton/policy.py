"""Sending policy: what to send next, on which spreading factor, and when to retry.

* Every message keeps its counter on every retry (the gateway dedupes on it).
* Retry r (r = 1, 2, ...) waits min(2**(r-1), 32) s x U(0.5, 1.5) for the first six
  retries, then 60 s x U(0.75, 1.25), until acknowledged or cancelled. ALARM, TAMPER and
  CANCEL never give up; TEST gives up after 8 attempts, HEARTBEAT after 3.
* Priority ALARM > TAMPER/CANCEL > TEST > HEARTBEAT: a lower kind is never sent while a
  higher one is due, and heartbeats wait while an alarm is unacknowledged.
* Spreading-factor ladder from the configured SF up to the slowest SF the region's dwell
  limit allows; attempts cycle through it so a single-SF receiver at the base SF still
  hears every len(ladder)-th attempt. Airtime is checked against the duty-cycle budget;
  non-alarm kinds may use only half of it so an alarm always finds airtime.
"""

from panicproto import ALARM, CANCEL, HEARTBEAT, TAMPER, TEST, airtime

FAST_RETRIES = 6
MAX_BACKOFF_S = 32
SLOW_S = 60
PERSISTENT = (ALARM, TAMPER, CANCEL)
MAX_ATTEMPTS = {TEST: 8, HEARTBEAT: 3}
PRIORITY = {ALARM: 0, TAMPER: 1, CANCEL: 1, TEST: 2, HEARTBEAT: 3}
NON_ALARM_DUTY_SHARE = 0.5
NO_CONFIRM_AFTER = 3  # attempts without STORED before the "no confirmation" signal
# After ACK STORED of an ALARM, ask again (same frame, next attempt number) this many
# seconds after the STORED ACK: gaps of 15, 30, 60, then 120 s; at the last entry (10
# minutes) stop asking. Requests use the non-alarm share of the duty-cycle budget.
CONFIRM_AT_S = (15, 45, 105, 225, 345, 465, 585, 600)


def backoff_s(retry, rand):
    """Delay before retry number ``retry`` (1-based); ``rand()`` returns [0, 1)."""
    if retry <= FAST_RETRIES:
        base = 1 << (retry - 1)
        if base > MAX_BACKOFF_S:
            base = MAX_BACKOFF_S
        return base * (0.5 + rand())
    return SLOW_S * (0.75 + 0.5 * rand())


class Message:
    """One uplink in flight. ``attempts`` = transmissions so far (all paths count once)."""

    def __init__(self, kind, counter, now):
        self.kind = kind
        self.counter = counter
        self.attempts = 0
        self.next_due = now
        self.created = now
        self.signalled_no_ack = False
        self.final = False  # last attempt made; dropped when its wait ends

    def __repr__(self):
        return "Message(kind=%d, counter=%d, attempts=%d)" % (self.kind, self.counter,
                                                             self.attempts)


class Outbox:
    """Messages waiting for an acknowledgement, at most one per kind."""

    def __init__(self, rand):
        self.rand = rand
        self.items = []
        self.abandoned = 0  # non-persistent messages given up (tests / heartbeats only)

    def find_kind(self, kind):
        for m in self.items:
            if m.kind == kind:
                return m
        return None

    def find_counter(self, counter):
        for m in self.items:
            if m.counter == counter:
                return m
        return None

    def add(self, msg):
        old = self.find_kind(msg.kind)
        if old is not None:
            self.items.remove(old)
        self.items.append(msg)
        return msg

    def remove(self, msg):
        if msg in self.items:
            self.items.remove(msg)

    def has_alarm(self):
        return self.find_kind(ALARM) is not None

    def due(self, now):
        """Highest-priority message whose retry time has come, or None."""
        best = None
        for m in self.items:
            if m.next_due > now:
                continue
            if m.kind == HEARTBEAT and self.has_alarm():
                continue  # an alarm in flight already proves the device is alive
            if best is None or PRIORITY[m.kind] < PRIORITY[best.kind] \
                    or (PRIORITY[m.kind] == PRIORITY[best.kind] and m.created < best.created):
                best = m
        return best

    def next_due(self):
        """When ``due`` can next return a message (None: nothing waits)."""
        t = None
        alarm = self.has_alarm()
        for m in self.items:
            if (t is None or m.next_due < t) and not (m.kind == HEARTBEAT and alarm):
                t = m.next_due
        return t

    def sent(self, msg, now):
        """Record one transmission; schedule the retry or give the message up.

        Returns False when a non-persistent message has used its attempts.
        """
        msg.attempts += 1
        limit = MAX_ATTEMPTS.get(msg.kind)
        if limit is not None and msg.attempts >= limit:
            # Keep it one more backoff so a late ACK still counts, then drop it.
            msg.next_due = now + backoff_s(msg.attempts, self.rand)
            msg.final = True
            return False
        msg.next_due = now + backoff_s(msg.attempts, self.rand)
        return True

    def expire(self, now):
        """Drop non-persistent messages whose last wait is over; returns them."""
        gone = []
        for m in list(self.items):
            if m.final and m.next_due <= now and m.kind not in PERSISTENT:
                self.items.remove(m)
                self.abandoned += 1
                gone.append(m)
        return gone

    def hurry(self, kind, now):
        """A repeated press: retry the pending message now, restarting the fast phase."""
        m = self.find_kind(kind)
        if m is not None:
            m.next_due = now
        return m


def sf_ladder(region, base_sf, max_sf, payload_len, bw_hz=125000):
    """Spreading factors to cycle through, within the region's dwell limit."""
    top = region.slowest_sf(payload_len, bw_hz)
    if max_sf < top:
        top = max_sf
    if base_sf > top:
        base_sf = top
    return list(range(base_sf, top + 1))


def sf_for_attempt(ladder, attempt):
    return ladder[attempt % len(ladder)]


def choose_sf(ladder, attempt, kind, duty, now, payload_len, bw_hz=125000):
    """(sf, airtime_ms) to use now, or (None, wait_s) when the duty budget is spent.

    Falls back to faster (shorter) SFs of the ladder before waiting.
    """
    want = sf_for_attempt(ladder, attempt)
    share = 1.0 if kind == ALARM else NON_ALARM_DUTY_SHARE
    for sf in range(want, ladder[0] - 1, -1):
        ms = airtime.time_on_air_ms(payload_len, sf, bw_hz)
        if duty is None or not duty.duty:
            return sf, ms
        if duty.used_ms(now) + ms <= duty.budget_ms() * share:
            return sf, ms
    ms = airtime.time_on_air_ms(payload_len, ladder[0], bw_hz)
    if share >= 1.0:
        return None, duty.wait_s(now, ms)
    return None, SLOW_S
