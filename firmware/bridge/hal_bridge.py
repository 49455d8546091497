"""Hardware glue for the LoRa bridge (Feather RP2040 RFM95): the only hardware imports."""

import os
import time

import board
import digitalio
import microcontroller
import usb_cdc

from panicbridge.boards import PROFILE

try:
    from watchdog import WatchDogMode
except ImportError:
    WatchDogMode = None

SETTINGS = ("PB_FREQUENCY_MHZ", "PB_SF", "PB_BANDWIDTH_HZ", "PB_CODING_RATE", "PB_TX_POWER")


class BridgeHal:
    def __init__(self):
        self.serial = usb_cdc.data
        if self.serial is None:
            raise RuntimeError("usb_cdc.data is off: boot.py must enable it")
        self.serial.timeout = 0
        self.serial.write_timeout = 0.2
        self._led = digitalio.DigitalInOut(getattr(board, PROFILE["led"]))
        self._led.switch_to_output(value=False)
        self._wd = None
        if WatchDogMode is not None:
            try:
                self._wd = microcontroller.watchdog
                self._wd.timeout = PROFILE["watchdog_s"]
                self._wd.mode = WatchDogMode.RESET
            except Exception:
                self._wd = None

    def monotonic(self):
        return time.monotonic()

    def sleep(self, s):
        time.sleep(s)

    def read_settings(self):
        out = {}
        for k in SETTINGS:
            out[k] = os.getenv(k)
        return out

    def console(self, text):
        print(text)

    def led(self, on):
        self._led.value = bool(on)

    def feed(self):
        if self._wd is not None:
            self._wd.feed()

    def radio(self, cfg):
        from adafruit_rfm import rfm9x

        cs_name, rst_name = PROFILE["rfm"]
        cs = digitalio.DigitalInOut(getattr(board, cs_name))
        rst = digitalio.DigitalInOut(getattr(board, rst_name))
        r = rfm9x.RFM9x(board.SPI(), cs, rst, cfg["frequency_mhz"])
        r.radiohead = False  # no 4-byte RadioHead header: the frame is the whole packet
        return r
