"""Resting between loop passes, and the heartbeat schedule.

``decide`` is pure logic; ``rest`` carries it out through the HAL (the glue sleeps).

Modes returned by ``decide``:

* ("poll", s): something is happening (button down, clicks, LED pattern, receive window):
  stay awake and loop again in ``s`` seconds.
* ("nap", s): messages are waiting for a retry: short sleeps so a press is still seen.
* ("deep", s) / ("light", s): idle until the next heartbeat; wake early on the button.
  Deep sleep only where the board supports it, otherwise light sleep.
"""

import struct

from panicproto.crc import crc16

POLL_S = 0.02
NAP_S = 0.1
MIN_SLEEP_S = 2.0
HB_OFFSET = 16  # heartbeat record in sleep memory (the counter uses 0-9)
HB_LEN = 16  # b"HB" | wall u32 | seconds left u32 | interval u32 | crc16 (the 12-byte
# record of firmware < 0.3.0, without the interval, fails this CRC and is ignored)


def decide(now, busy, next_due, rx_until, next_heartbeat, deep_ok):
    if busy or (rx_until is not None and now < rx_until):
        return "poll", POLL_S
    if next_due is not None:
        wait = next_due - now
        return "nap", NAP_S if wait > NAP_S else (wait if wait > 0 else 0.0)
    wait = next_heartbeat - now
    if wait < MIN_SLEEP_S:
        return "nap", NAP_S if wait > NAP_S else (wait if wait > 0 else 0.0)
    return ("deep" if deep_ok else "light"), wait


def rest(hal, now, busy, next_due, rx_until, hb):
    """Sleep as ``decide`` says. Before a deep sleep (which ends code.py) the heartbeat
    schedule goes to sleep memory; the LED is off in any sleep."""
    mode, secs = decide(now, busy, next_due, rx_until, hb.next_at, hal.deep_sleep_ok)
    if mode == "deep":
        hal.led(False)
        hb.save(hal.sleep_memory, now, hal.wall_time())
        hal.deep_sleep(secs)
    elif mode == "light":
        hal.led(False)
        hal.light_sleep(secs)
    elif secs > 0:
        hal.sleep(secs)


class Heartbeat:
    """When the next heartbeat is due. It is deferred, never sent, while an alarm is in
    flight (the outbox enforces that)."""

    def __init__(self, interval_s, now, first_in_s=None):
        self.interval_s = interval_s
        self.next_at = now + (interval_s if first_in_s is None else first_in_s)

    def due(self, now):
        return now >= self.next_at

    def sent(self, now):
        self.next_at = now + self.interval_s

    def save(self, mem, now, wall):
        """Before deep sleep: remember the time left against the wall clock, and the
        interval it was scheduled with."""
        if mem is None or len(mem) < HB_OFFSET + HB_LEN:
            return
        left = self.next_at - now
        left = 0 if left < 0 else int(left)
        body = b"HB" + struct.pack(">III", int(wall) & 0xFFFFFFFF, left,
                                      int(self.interval_s))
        mem[HB_OFFSET:HB_OFFSET + HB_LEN] = body + struct.pack(">H", crc16(body))

    def restore(self, mem, now, wall, woke_by_timer):
        """After a wake or a soft reload. A timer wake means the heartbeat is due; otherwise
        the wall clock tells how long we slept; when it cannot, send early, not late. A
        record made with another interval (settings.toml rewritten, e.g. re-provisioned
        with a new PB_SUPERVISION_S) is stale: the heartbeat is due at once, then the new
        interval applies. Never waits longer than one interval."""
        if mem is None or len(mem) < HB_OFFSET + HB_LEN:
            return False
        raw = bytes(mem[HB_OFFSET:HB_OFFSET + HB_LEN])
        if raw[0:2] != b"HB" or struct.unpack(">H", raw[14:16])[0] != crc16(raw[0:14]):
            return False
        slept_at, left, interval_s = struct.unpack(">III", raw[2:14])
        elapsed = (int(wall) & 0xFFFFFFFF) - slept_at
        if woke_by_timer or interval_s != self.interval_s or elapsed < 0 or elapsed > left:
            self.next_at = now
        else:
            left -= elapsed
            self.next_at = now + (left if left < self.interval_s else self.interval_s)
        return True
