"""The button's main loop, written against a small HAL object (no hardware imports).

HAL contract (the glue ``hal_board.py`` implements it on CircuitPython, panicsim on a PC):

    board_name, has_radio, has_wifi, deep_sleep_ok   attributes
    wake                      None (cold boot / reload), "pin" or "time" (deep-sleep wake)
    nvm, sleep_memory         bytearray-likes (sleep_memory may be None)
    monotonic(), wall_time(), sleep(s), rand() -> [0, 1)
    read_settings()           dict of raw PB_* values (missing ones None)
    button_events()           list of (pressed: bool, t: monotonic seconds), debounced
    button_is_down(), tamper_open() (None when no tamper switch), battery_mv() (or None)
    led(on), feed()           LED, watchdog
    radio(settings)           an adafruit_rfm9x.RFM9x-like object (raises if not found)
    wifi_session(settings)    an adafruit_requests.Session, connecting first (or raises)
    deep_sleep(s)             never returns: wakes on the button or after s seconds
    light_sleep(s)            returns when the button is pressed or s seconds passed
    console(text)             one line on the serial console
"""

from panicbutton import feedback, policy, power
from panicbutton.counter import CounterExhausted
from panicbutton.messaging import Messaging
from panicbutton.startup import ConfigError, Startup
from panicproto.frames import HEARTBEAT, TEST

ERROR_REPEAT_S = 30


class ButtonApp(Startup, Messaging):
    def __init__(self, hal):
        self.hal = hal
        self.error = None
        self.lora = None
        self.wifi = None
        self.settings = None
        self.device_id = None
        self.key = None
        self.counter = None
        self.outbox = None
        self.verifier = None
        self.classifier = None
        self.heartbeat = None
        self.confirming = None  # the STORED alarm's Message while asking for DELIVERED
        self.player = feedback.Player()
        self.rx_until = None
        self.tamper = False
        self._battery = None
        self._battery_at = -1e9
        self._error_said = -1e9
        self.loop_errors = 0
        self.acked = {}
        self.events = []  # recent (what, detail) for the simulator and tests; bounded

    # -- loop -------------------------------------------------------------------------
    def run(self):
        """Forever: boot, then loop. Never raises (a crash loop would silence the alarm)."""
        self.boot()
        while True:
            try:
                self.step()
            except CounterExhausted as e:
                self._fail(ConfigError(feedback.ERROR_COUNTER, str(e)))
            except Exception as e:
                self.loop_errors += 1
                self.hal.console("PANIC-BUTTON loop error %d: %r" % (self.loop_errors, e))
                self.hal.sleep(0.1)

    def _note(self, what, detail=None):
        self.events.append((what, detail))
        if len(self.events) > 64:
            self.events.pop(0)

    def step(self):
        hal = self.hal
        hal.feed()
        now = hal.monotonic()
        if self.error is not None:
            self._error_step(now)
            return
        for pressed, t in hal.button_events():
            ev = self.classifier.feed(pressed, t)
            if ev is not None:
                self._on_press(ev, now)
        ev = self.classifier.update(now)
        if ev is not None:
            self._on_press(ev, now)
        self._check_tamper(now)
        if self.rx_until is not None:
            if self.lora is not None and now < self.rx_until:
                self._on_downlink(self.lora.poll(0.01), "lora")
            else:
                self.rx_until = None
        now = hal.monotonic()
        for m in self.outbox.expire(now):
            self._note("gave_up", (m.kind, m.counter))
            if m.kind == TEST:
                hal.console("PANIC-BUTTON test not confirmed after %d attempts" % m.attempts)
                self.player.play(feedback.TEST_FAILED, now)
        if self.heartbeat.due(now) and self.outbox.find_kind(HEARTBEAT) is None \
                and not self.outbox.has_alarm():
            self._queue(HEARTBEAT, now)
            self.heartbeat.sent(now)
        msg = self.outbox.due(now)
        if msg is not None:
            self._attempt(msg, now)
        else:
            self._confirm_step(now)
        now = hal.monotonic()
        hal.led(self.player.update(now))
        self._rest(now)

    def _confirm_step(self, now):
        """After STORED: ask again on the slow schedule (policy.CONFIRM_AT_S) until
        DELIVERED or its end. ``confirming`` is the stored alarm's Message: ``created`` =
        when it was STORED, ``attempts`` = the attempt number the next request carries."""
        m = self.confirming
        if m is None or m.next_due > now or self.outbox.has_alarm():
            return  # an unacknowledged alarm goes first
        if now >= m.created + policy.CONFIRM_AT_S[-1]:
            self.confirming = None
            self.hal.console("PANIC-BUTTON alarm counter=%d stored; delivery not confirmed "
                             "in %d s (stopped asking)" % (m.counter, policy.CONFIRM_AT_S[-1]))
            return
        tried, wait = self._send(m.kind, m.counter, m.attempts, now, 0)
        if self.confirming is not m:
            return  # DELIVERED arrived during this request
        if tried:
            m.attempts += 1
            for t in policy.CONFIRM_AT_S:  # the next time; the last entry: stop asking
                if m.next_due <= now and m.created + t > now:
                    m.next_due = m.created + t
        else:
            m.next_due = now + (wait if wait > 1 else 1)

    def _error_step(self, now):
        hal = self.hal
        hal.led(self.player.update(now))
        if now - self._error_said >= ERROR_REPEAT_S:
            self._error_said = now
            e = self.error
            hal.console("PANIC-BUTTON ERROR %d %s: %s" % (e.code, feedback.ERROR_NAMES[e.code],
                                                         e.message))
        hal.sleep(0.05)

    def _rest(self, now):
        busy = self.classifier.busy() or self.player.busy()
        t = self.outbox.next_due()
        m = self.confirming
        if m is not None and (t is None or m.next_due < t):
            t = m.next_due
        mode, secs = power.decide(now, busy, t, self.rx_until, self.heartbeat.next_at,
                                  self.hal.deep_sleep_ok)
        if mode == "deep":
            self.hal.led(False)
            self.heartbeat.save(self.hal.sleep_memory, now, self.hal.wall_time())
            self._note("deep_sleep", secs)
            self.hal.deep_sleep(secs)
        elif mode == "light":
            self.hal.led(False)
            self.hal.light_sleep(secs)
        elif secs > 0:
            self.hal.sleep(secs)

    def stats(self):
        """Counters for diagnostics and tests."""
        out = {"loop_errors": self.loop_errors, "acked": self.acked,
               "pending": [(m.kind, m.counter, m.attempts) for m in self.outbox.items]
               if self.outbox else [],
               "rejects": self.verifier.rejects if self.verifier else {},
               "abandoned": self.outbox.abandoned if self.outbox else 0,
               "confirming": self.confirming.counter if self.confirming else None}
        if self.lora is not None:
            out["lora"] = self.lora.stats()
        if self.wifi is not None:
            out["wifi"] = self.wifi.stats()
        return out


def main(hal):
    ButtonApp(hal).run()
