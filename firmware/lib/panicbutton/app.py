"""The button's main loop, written against a small HAL object (no hardware imports).

Each job is its own object with its own state: boot (setup.setup), the press patterns
(classifier.Classifier), each message's life (messages.Messages: queueing, attempts,
ACK/RESYNC; confirm.Confirm: asking for DELIVERED after STORED), sending on every path
(sender.Sender), the LED (feedback.Player), resting and the heartbeat schedule (power).
The loop feeds them in order; it owns only the error state and the tamper switch's level.

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

from panicbutton import FIRMWARE_VERSION, feedback, power, report
from panicbutton.counter import CounterExhausted
from panicbutton.nvmstore import take_remote_test
from panicbutton.setup import ConfigError, setup
from panicproto.frames import HEARTBEAT, TAMPER, TEST

ERROR_REPEAT_S = 30


class ButtonApp:
    def __init__(self, hal):
        self.hal = hal
        self.player = feedback.Player()
        self.msgs = None  # messages.Messages, once set up
        self.classifier = None
        self.heartbeat = None
        self.error = None  # the ConfigError that stopped the button
        self.said = -1e9  # when its console line was last repeated
        self.tamper = False  # the enclosure switch was open at the last look
        self.loop_errors = 0

    def boot(self):
        """Set up and print the boot report. False when a configuration error stops us.

        A TEST request left in NVM by ``panictool verify`` is erased first, then sent as
        one TEST press after the report (``remote_test`` = its nonce; the key's presence
        tells the tool this firmware takes requests)."""
        hal = self.hal
        nonce = take_remote_test(hal.nvm)
        rep = {"firmware": FIRMWARE_VERSION, "board": hal.board_name, "device_id": None,
               "epoch": None, "radio": "absent", "wifi": "absent", "paths": [],
               "remote_test": nonce}
        try:
            self.msgs, self.classifier, self.heartbeat = setup(hal, rep, self.player)
            self.tamper = rep["tamper"]
        except ConfigError as e:
            self._fail(e)
            rep["error"] = {"code": e.code, "name": feedback.ERROR_NAMES[e.code],
                            "message": e.message}
        hal.console(report.line(rep))
        if nonce is not None and self.error is None:
            self.msgs.add(TEST, hal.monotonic())
        return self.error is None

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

    def _fail(self, e):
        self.error = e
        self.hal.console("PANIC-BUTTON ERROR %d %s: %s" % (e.code, feedback.ERROR_NAMES[e.code],
                                                          e.message))
        self.player.play(feedback.error_pattern(e.code), self.hal.monotonic(), repeat=True)
        self.said = self.hal.monotonic()

    def step(self):
        hal = self.hal
        hal.feed()
        now = hal.monotonic()
        if self.error is not None:  # stopped: the error's LED code and console line
            hal.led(self.player.update(now))
            if now - self.said >= ERROR_REPEAT_S:
                self.said = now
                e = self.error
                hal.console("PANIC-BUTTON ERROR %d %s: %s" % (
                    e.code, feedback.ERROR_NAMES[e.code], e.message))
            hal.sleep(0.05)
            return
        msgs = self.msgs
        for pressed, t in hal.button_events():
            ev = self.classifier.feed(pressed, t)
            if ev is not None:
                msgs.add(ev, now)
        ev = self.classifier.update(now)
        if ev is not None:
            msgs.add(ev, now)
        t = hal.tamper_open()
        if t is not None:
            if t and not self.tamper:
                msgs.add(TAMPER, now)
            self.tamper = bool(t)
        msgs.downlink(msgs.sender.poll(now), "lora")
        now = hal.monotonic()
        msgs.expire(now)
        if self.heartbeat.due(now) and msgs.add(HEARTBEAT, now) is not None:
            self.heartbeat.sent(now)
        msgs.step(now)
        now = hal.monotonic()
        hal.led(self.player.update(now))
        power.rest(hal, now, self.classifier.busy() or self.player.busy(), msgs.next_due(),
                   msgs.sender.rx_until, self.heartbeat)


def main(hal):
    ButtonApp(hal).run()
