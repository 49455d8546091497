"""Hardware glue for the button: the only module that imports CircuitPython hardware.

Board differences come from panicbutton.boards (one table); nothing here branches on
the board name. Implements the HAL contract documented in panicbutton/app.py.
"""

import os
import random
import time

import alarm
import board
import digitalio
import keypad
import microcontroller
import supervisor

from panicbutton import boards
from panicbutton.settings import KEYS

try:
    from watchdog import WatchDogMode
except ImportError:  # a port without watchdog: feed() becomes a no-op
    WatchDogMode = None


_TICKS_MASK = (1 << 29) - 1  # supervisor.ticks_ms() wraps here


class BoardHal:
    def __init__(self):
        override = os.getenv("PB_BOARD")
        self.board_name, self.profile = boards.profile_for(board.board_id, override)
        p = self.profile
        self.has_radio = p["rfm"] is not None
        self.has_wifi = p["wifi"]
        self.deep_sleep_ok = p["deep_sleep"]
        self.nvm = microcontroller.nvm
        self.sleep_memory = alarm.sleep_memory
        wake = alarm.wake_alarm
        if wake is None:
            self.wake = None
        elif isinstance(wake, alarm.time.TimeAlarm):
            self.wake = "time"
        else:
            self.wake = "pin"
        self._button_pin = getattr(board, p["button"])
        probe = digitalio.DigitalInOut(self._button_pin)
        probe.switch_to_input(pull=digitalio.Pull.UP)
        self._down_at_boot = not probe.value
        probe.deinit()
        self._keys = keypad.Keys((self._button_pin,), value_when_pressed=False, pull=True)
        self._tamper = None
        if p["tamper"] and os.getenv("PB_TAMPER") in (1, "1"):  # opt-in: needs a switch
            self._tamper = digitalio.DigitalInOut(getattr(board, p["tamper"]))
            self._tamper.switch_to_input(pull=digitalio.Pull.UP)
        self._led = digitalio.DigitalInOut(getattr(board, p["led"]))
        self._led.switch_to_output(value=False)
        self._event = keypad.Event()
        self._session = None
        self._radio = None
        self._wd = None
        if WatchDogMode is not None:
            try:
                self._wd = microcontroller.watchdog
                self._wd.timeout = p["watchdog_s"]
                self._wd.mode = WatchDogMode.RESET
            except Exception:
                self._wd = None

    # time and randomness
    def monotonic(self):
        return time.monotonic()

    def wall_time(self):
        return time.time()

    def sleep(self, s):
        time.sleep(s)

    def rand(self):
        return random.random()

    # settings, console
    def read_settings(self):
        out = {}
        for k in KEYS:
            out[k] = os.getenv(k)
        return out

    def console(self, text):
        print(text)

    # inputs and outputs
    def button_events(self):
        """Edges with the time keypad's background scan saw them, not when we got round to
        reading them: a radio transmission can hold the loop for a second, and five quick
        TEST presses must not merge into one long (alarm) hold. keypad stamps events with
        supervisor.ticks_ms(), which wraps at 2**29 ms (first ~65 s after power-on) and has
        no relation to time.monotonic(): age = the wrapped difference of the two ticks."""
        out = []
        now = time.monotonic()
        ticks = supervisor.ticks_ms()
        ev = self._event
        while self._keys.events.get_into(ev):
            age_ms = (ticks - ev.timestamp) & _TICKS_MASK if hasattr(ev, "timestamp") else 0
            t = now - age_ms / 1000.0 if age_ms < 60000 else now
            out.append((ev.pressed, t))
        return out

    def button_is_down(self):
        return self._down_at_boot

    def tamper_open(self):
        if self._tamper is None:
            return None
        return self._tamper.value  # pulled up: high = switch open = enclosure open

    def battery_mv(self):
        b = self.profile["battery"]
        if not b:
            return None
        if b[0] == "adc":
            import analogio

            a = analogio.AnalogIn(getattr(board, b[1]))
            try:
                return int(a.value * a.reference_voltage / 65535 * b[2] * 1000)
            finally:
                a.deinit()
        if b[0] == "max17048":
            i2c = board.I2C()
            buf = bytearray(2)
            while not i2c.try_lock():
                pass
            try:
                i2c.writeto_then_readfrom(0x36, bytes((0x02,)), buf)  # VCELL
            finally:
                i2c.unlock()
            return ((buf[0] << 8) | buf[1]) * 78125 // 1000000
        return None

    def led(self, on):
        self._led.value = bool(on)

    def feed(self):
        if self._wd is not None:
            self._wd.feed()

    # radio and network
    def radio(self, settings):
        from adafruit_rfm import rfm9x

        cs_name, rst_name = self.profile["rfm"]
        cs = digitalio.DigitalInOut(getattr(board, cs_name))
        rst = digitalio.DigitalInOut(getattr(board, rst_name))
        r = rfm9x.RFM9x(board.SPI(), cs, rst, settings.frequency_mhz)
        r.radiohead = False  # no 4-byte RadioHead header: the 19-byte frame is the packet
        self._radio = r
        return r

    def wifi_session(self, settings):
        import wifi

        if not wifi.radio.connected:
            self._session = None
            self.feed()
            wifi.radio.connect(settings.wifi_ssid, settings.wifi_password)
            self.feed()
        if self._session is None:
            import ssl

            import adafruit_requests
            import socketpool

            pool = socketpool.SocketPool(wifi.radio)
            self._session = adafruit_requests.Session(pool, ssl.create_default_context())
        return self._session

    # sleeping
    def _stop_watchdog(self):
        if self._wd is not None:
            try:
                self._wd.deinit()
            except Exception:
                pass

    def _alarms(self, seconds):
        if self._radio is not None:
            self._radio.sleep()  # an RFM95 left listening draws ~11 mA through deep sleep
        self._keys.deinit()  # PinAlarm needs the pin
        return (alarm.pin.PinAlarm(self._button_pin, value=False, pull=True),
                alarm.time.TimeAlarm(monotonic_time=time.monotonic() + seconds))

    def deep_sleep(self, seconds):
        self._stop_watchdog()
        alarm.exit_and_deep_sleep_until_alarms(*self._alarms(seconds))

    def light_sleep(self, seconds):
        step = self.profile["watchdog_s"] / 2 if self._wd is not None else seconds
        end = time.monotonic() + seconds
        woke = False
        while not woke and time.monotonic() < end:
            self.feed()
            chunk = min(step, end - time.monotonic())
            if chunk <= 0:
                break
            pa, ta = self._alarms(chunk)
            woke = isinstance(alarm.light_sleep_until_alarms(pa, ta), alarm.pin.PinAlarm)
            self._keys = keypad.Keys((self._button_pin,), value_when_pressed=False, pull=True)
        return woke
