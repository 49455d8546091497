"""Boot: settings, identity, counter, paths, and the boot report's fields.

``setup`` builds the objects the loop runs with (each owns its state) or raises
ConfigError, which stops the button with an LED code and a console line.
"""

from panicbutton import feedback, power
from panicbutton.classifier import Classifier
from panicbutton.counter import Counter, CounterExhausted
from panicbutton.messages import Messages
from panicbutton.nvmstore import EpochStore, read_identity
from panicbutton.sender import Sender
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


def setup(hal, rep, player):
    """(messages, classifier, heartbeat) for the loop; fills the boot report ``rep``."""
    now = hal.monotonic()
    try:
        s = parse_settings(hal.read_settings())
    except SettingsError as e:
        raise ConfigError(feedback.ERROR_SETTINGS, "settings.toml " + str(e)) from None
    rep["settings"] = s.public()
    ident = read_identity(hal.nvm)
    if ident is None:
        raise ConfigError(feedback.ERROR_NOT_PROVISIONED,
                          "no device id/key in NVM: run `panictool provision`")
    rep["device_id"] = ident[0]
    counter = Counter(EpochStore(hal.nvm), hal.sleep_memory)
    try:
        rep["epoch"] = counter.boot()
    except CounterExhausted as e:
        raise ConfigError(feedback.ERROR_COUNTER, str(e)) from None
    rep["cold_boot"] = counter.cold
    rep["wake"] = hal.wake
    lora = None
    wifi = None
    if hal.has_radio and s.lora:
        try:
            lora = LoraPath(hal.radio(s), s)
            rep["radio"] = "ok"
        except Exception as e:  # RuntimeError("Failed to find rfm9x...") and friends
            rep["radio"] = "fail: %s" % e
    elif hal.has_radio:
        rep["radio"] = "disabled"
    if hal.has_wifi:
        rep["wifi"] = "off"
        if s.wifi_ssid:
            wifi = WifiPath(lambda: hal.wifi_session(s), s.gateway_url)
            if hal.wake is None:  # self-test on cold boot; skip on wake to save power
                try:
                    hal.wifi_session(s)
                    rep["wifi"] = "ok"
                except Exception as e:
                    rep["wifi"] = "fail: %s" % e
            else:
                rep["wifi"] = "deferred"
    if lora is None and wifi is None:
        if rep["radio"].startswith("fail"):
            raise ConfigError(feedback.ERROR_RADIO, "LoRa radio not found (%s): check "
                              "wiring and PB_BOARD" % rep["radio"])
        raise ConfigError(feedback.ERROR_NO_PATH, "no path to a gateway: use a LoRa board "
                          "with PB_LORA = 1, or set PB_WIFI_SSID and PB_GATEWAY_URL")
    if rep["radio"].startswith("fail"):
        hal.console("PANIC-BUTTON WARNING radio: %s (continuing on Wi-Fi)" % rep["radio"])
        player.play(feedback.error_pattern(feedback.ERROR_RADIO), now)
    rep["paths"] = [p.name for p in (lora, wifi) if p is not None]
    sender = Sender(hal, s, ident, lora, wifi)
    classifier = Classifier(hold_s=s.alarm_hold_ms / 1000.0,
                            cancel_clicks=CANCEL_CLICKS if s.cancel else 0)
    if counter.cold:
        hb = power.Heartbeat(s.supervision_s, now, FIRST_HEARTBEAT_S)
    else:
        hb = power.Heartbeat(s.supervision_s, now)
        hb.restore(hal.sleep_memory, now, hal.wall_time(), hal.wake == "time")
    if hal.wake == "pin" or hal.button_is_down():
        classifier.wake_pressed(now)
    rep["battery_mv"] = sender.battery(now)
    rep["tamper"] = bool(hal.tamper_open())
    rep["next_counter"] = counter.peek()
    return Messages(hal, sender, counter, player), classifier, hb
