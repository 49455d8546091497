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

from panicbutton import FIRMWARE_VERSION, feedback, policy, power, report
from panicbutton.classifier import Classifier
from panicbutton.counter import Counter, CounterExhausted
from panicbutton.downlink import Verifier
from panicbutton.nvmstore import EpochStore, read_identity
from panicbutton.settings import SettingsError
from panicbutton.settings import parse as parse_settings
from panicbutton.transport_lora import LoraPath
from panicbutton.transport_wifi import WifiPath
from panicproto import frames
from panicproto.frames import ACK, ALARM, CANCEL, HEARTBEAT, RESYNC, TAMPER, TEST

CANCEL_CLICKS = 8
BATTERY_EVERY_S = 60
ERROR_REPEAT_S = 30
FIRST_HEARTBEAT_S = 5


class ConfigError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class ButtonApp:
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
        self.player = feedback.Player()
        self.rx_until = None
        self.tamper = False
        self._battery = None
        self._battery_at = -1e9
        self._error_said = -1e9
        self.loop_errors = 0
        self.acked = {}
        self.events = []  # recent (what, detail) for the simulator and tests; bounded

    # -- boot -------------------------------------------------------------------------
    def boot(self):
        """Set up and print the boot report. False when a configuration error stops us."""
        hal = self.hal
        rep = {"firmware": FIRMWARE_VERSION, "board": hal.board_name, "device_id": None,
               "epoch": None, "radio": "absent", "wifi": "absent", "paths": []}
        try:
            self._setup(rep)
        except ConfigError as e:
            self._fail(e)
            rep["error"] = {"code": e.code, "name": feedback.ERROR_NAMES[e.code],
                            "message": e.message}
        hal.console(report.line(rep))
        return self.error is None

    def _fail(self, e):
        self.error = e
        self.hal.console("PANIC-BUTTON ERROR %d %s: %s" % (e.code, feedback.ERROR_NAMES[e.code],
                                                          e.message))
        self.player.play(feedback.error_pattern(e.code), self.hal.monotonic(), repeat=True)
        self._error_said = self.hal.monotonic()

    def _setup(self, rep):
        hal = self.hal
        now = hal.monotonic()
        try:
            self.settings = s = parse_settings(hal.read_settings())
        except SettingsError as e:
            raise ConfigError(feedback.ERROR_SETTINGS, "settings.toml " + str(e)) from None
        rep["settings"] = s.public()
        ident = read_identity(hal.nvm)
        if ident is None:
            raise ConfigError(feedback.ERROR_NOT_PROVISIONED,
                              "no device id/key in NVM: run `panictool provision`")
        self.device_id, self.key = ident
        rep["device_id"] = self.device_id
        self.counter = Counter(EpochStore(hal.nvm), hal.sleep_memory)
        try:
            rep["epoch"] = self.counter.boot()
        except CounterExhausted as e:
            raise ConfigError(feedback.ERROR_COUNTER, str(e)) from None
        rep["cold_boot"] = self.counter.cold
        rep["wake"] = hal.wake
        if hal.has_radio and s.lora:
            try:
                self.lora = LoraPath(hal.radio(s), s)
                rep["radio"] = "ok"
            except Exception as e:  # RuntimeError("Failed to find rfm9x...") and friends
                rep["radio"] = "fail: %s" % e
        elif hal.has_radio:
            rep["radio"] = "disabled"
        if hal.has_wifi:
            rep["wifi"] = "off"
            if s.wifi_ssid:
                self.wifi = WifiPath(self._session, s.gateway_url)
                if hal.wake is None:  # self-test on cold boot; skip on wake to save power
                    try:
                        self._session()
                        rep["wifi"] = "ok"
                    except Exception as e:
                        rep["wifi"] = "fail: %s" % e
                else:
                    rep["wifi"] = "deferred"
        if self.lora is None and self.wifi is None:
            if rep["radio"].startswith("fail"):
                raise ConfigError(feedback.ERROR_RADIO, "LoRa radio not found (%s): check "
                                  "wiring and PB_BOARD" % rep["radio"])
            raise ConfigError(feedback.ERROR_NO_PATH, "no path to a gateway: use a LoRa board "
                              "with PB_LORA = 1, or set PB_WIFI_SSID and PB_GATEWAY_URL")
        if rep["radio"].startswith("fail"):
            hal.console("PANIC-BUTTON WARNING radio: %s (continuing on Wi-Fi)" % rep["radio"])
            self.player.play(feedback.error_pattern(feedback.ERROR_RADIO), now)
        rep["paths"] = [p.name for p in (self.lora, self.wifi) if p is not None]
        self.verifier = Verifier(self.key, self.device_id)
        self.outbox = policy.Outbox(hal.rand)
        self.classifier = Classifier(hold_s=s.alarm_hold_ms / 1000.0,
                                     cancel_clicks=CANCEL_CLICKS if s.cancel else 0)
        if self.counter.cold:
            self.heartbeat = power.Heartbeat(s.supervision_s, now, FIRST_HEARTBEAT_S)
        else:
            self.heartbeat = power.Heartbeat(s.supervision_s, now)
            self.heartbeat.restore(hal.sleep_memory, now, hal.wall_time(), hal.wake == "time")
        if hal.wake == "pin" or hal.button_is_down():
            self.classifier.wake_pressed(now)
        self.tamper = bool(hal.tamper_open())
        rep["battery_mv"] = self._battery_mv(now)
        rep["tamper"] = self.tamper
        rep["next_counter"] = self.counter.peek()

    def _session(self):
        return self.hal.wifi_session(self.settings)

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
        now = hal.monotonic()
        hal.led(self.player.update(now))
        self._rest(now)

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
        mode, secs = power.decide(now, busy, self.outbox.next_due(), self.rx_until,
                                  self.heartbeat.next_at, self.hal.deep_sleep_ok)
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

    # -- events -------------------------------------------------------------------------
    def _queue(self, kind, now):
        msg = self.outbox.add(policy.Message(kind, self.counter.next(), now))
        self._note("queued", (kind, msg.counter))
        return msg

    def _on_press(self, ev, now):
        name = frames.TYPE_NAMES[ev]
        if ev == ALARM:
            if self.outbox.hurry(ALARM, now) is not None:
                self.hal.console("PANIC-BUTTON press: alarm (repeat, resending now)")
                return
            msg = self._queue(ALARM, now)
        elif ev == CANCEL:
            alarm = self.outbox.find_kind(ALARM)
            if alarm is not None:
                self.outbox.remove(alarm)  # the CANCEL replaces it and is itself persistent
            msg = self._queue(CANCEL, now)
        else:
            msg = self._queue(ev, now)
        self.hal.console("PANIC-BUTTON press: %s counter=%d" % (name, msg.counter))

    def _check_tamper(self, now):
        t = self.hal.tamper_open()
        if t is None:
            return
        t = bool(t)
        if t and not self.tamper and self.outbox.find_kind(TAMPER) is None:
            self._queue(TAMPER, now)
        self.tamper = t

    def _battery_mv(self, now):
        if now - self._battery_at >= BATTERY_EVERY_S:
            self._battery_at = now
            try:
                self._battery = self.hal.battery_mv()
            except Exception:
                self._battery = None
        return self._battery

    def _attempt(self, msg, now):
        mv = self._battery_mv(now)
        low = mv is not None and mv < self.settings.low_battery_mv
        up = frames.Uplink(msg.kind, self.device_id, msg.counter, attempt=min(msg.attempts, 15),
                           low_battery=low, tamper=self.tamper, battery_mv=mv or 0)
        tried = False
        wait = 0
        if self.lora is not None:
            ok, x = self.lora.send(frames.encode_uplink(self.key, up), msg.kind, msg.attempts,
                                   now)
            if ok:
                tried = True
                self.rx_until = self.hal.monotonic() + self.settings.rx_window_ms / 1000.0
                self._note("lora_tx", (msg.kind, msg.counter, msg.attempts, x))
            elif x:
                wait = x
        if self.wifi is not None:
            up.wifi = True
            tried = True
            self._note("wifi_tx", (msg.kind, msg.counter, msg.attempts))
            body = self.wifi.exchange(frames.encode_uplink(self.key, up))
            if body is not None:
                self._on_downlink(body, "wifi")
        if msg not in self.outbox.items:
            return  # acknowledged during this attempt
        if tried:
            self.outbox.sent(msg, now)
        else:
            msg.next_due = now + (wait if wait > 1 else 1)
        if msg.kind in (ALARM, TEST) and msg.attempts >= policy.NO_CONFIRM_AFTER \
                and not msg.signalled_no_ack:
            msg.signalled_no_ack = True
            self.player.play(feedback.NO_CONFIRM, self.hal.monotonic())
            self._note("no_confirm", msg.counter)

    def _on_downlink(self, data, path):
        down = self.verifier.check(data)
        if down is None:
            return
        now = self.hal.monotonic()
        if down.kind == ACK:
            msg = self.outbox.find_counter(down.counter)
            if msg is None:
                self.verifier.unmatched()
                return
            self.outbox.remove(msg)
            self.acked[msg.kind] = self.acked.get(msg.kind, 0) + 1
            self._note("acked", (msg.kind, msg.counter, down.status, path))
            self.hal.console("PANIC-BUTTON ack: %s counter=%d status=%d via %s" % (
                frames.TYPE_NAMES[msg.kind], msg.counter, down.status, path))
            if msg.kind == TEST:
                self.player.play(feedback.TEST_OK, now)
            elif msg.kind != HEARTBEAT:
                self.player.play(feedback.STORED, now)
            if not self.outbox.items:
                self.rx_until = None
        elif down.kind == RESYNC:
            if self.counter.resync(down.counter):
                for m in self.outbox.items:
                    if m.counter < down.counter:
                        m.counter = self.counter.next()
                        m.next_due = now
                self._note("resync", down.counter)
                self.hal.console("PANIC-BUTTON resync: next counter %d" % down.counter)

    def stats(self):
        """Counters for diagnostics and tests."""
        out = {"loop_errors": self.loop_errors, "acked": self.acked,
               "pending": [(m.kind, m.counter, m.attempts) for m in self.outbox.items]
               if self.outbox else [],
               "rejects": self.verifier.rejects if self.verifier else {},
               "abandoned": self.outbox.abandoned if self.outbox else 0}
        if self.lora is not None:
            out["lora"] = self.lora.stats()
        if self.wifi is not None:
            out["wifi"] = self.wifi.stats()
        return out


def main(hal):
    ButtonApp(hal).run()
