"""Start-up half of the button app: settings, identity, counter, paths, boot report.

Split from app.py so CircuitPython can compile each file within a small heap.
"""

from panicbutton import FIRMWARE_VERSION, feedback, policy, power, report
from panicbutton.classifier import TEST, Classifier
from panicbutton.counter import Counter, CounterExhausted
from panicbutton.downlink import Verifier
from panicbutton.nvmstore import EpochStore, read_identity, take_remote_test
from panicbutton.settings import SettingsError
from panicbutton.settings import parse as parse_settings
from panicbutton.transport_lora import LoraPath
from panicbutton.transport_wifi import WifiPath

CANCEL_CLICKS = 8
FIRST_HEARTBEAT_S = 5


class ConfigError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Startup:
    # -- boot -------------------------------------------------------------------------
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
            self._setup(rep)
        except ConfigError as e:
            self._fail(e)
            rep["error"] = {"code": e.code, "name": feedback.ERROR_NAMES[e.code],
                            "message": e.message}
        hal.console(report.line(rep))
        if nonce is not None and self.error is None:
            self._note("remote_test", nonce)
            self._on_press(TEST, hal.monotonic())
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

