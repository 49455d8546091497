"""Sending attempts: one frame on every path the button has, the LoRa receive window
after it, and the battery reading the frame carries.

A Wi-Fi answer comes back during the attempt and goes to ``answer(data, path)`` at once
(messages.Messages.downlink); a LoRa answer comes later, from ``poll`` in the window.
"""

from panicproto import frames

BATTERY_EVERY_S = 60


class Sender:
    def __init__(self, hal, settings, ident, lora, wifi):
        self.hal = hal
        self.settings = settings
        self.device_id, self.key = ident
        self.lora = lora
        self.wifi = wifi
        self.answer = None  # where a verified-or-not downlink goes: answer(data, path)
        self.rx_until = None  # end of the LoRa receive window after a transmission
        self.mv = None  # battery reading, taken at most every BATTERY_EVERY_S
        self.mv_at = -1e9

    def battery(self, now):
        if now - self.mv_at >= BATTERY_EVERY_S:
            self.mv_at = now
            try:
                self.mv = self.hal.battery_mv()
            except Exception:
                self.mv = None
        return self.mv

    def send(self, kind, counter, attempt, now, duty):
        """One transmission of a frame on every path: (tried, wait_s). ``duty`` is the kind
        whose share of the LoRa duty-cycle budget it may use (ALARM all, others half)."""
        mv = self.battery(now)
        up = frames.Uplink(kind, self.device_id, counter, attempt=min(attempt, 15),
                           low_battery=mv is not None and mv < self.settings.low_battery_mv,
                           tamper=bool(self.hal.tamper_open()), battery_mv=mv or 0)
        tried = False
        wait = 0
        if self.lora is not None:
            ok, x = self.lora.send(frames.encode_uplink(self.key, up), duty, attempt, now)
            if ok:
                tried = True
                self.rx_until = self.hal.monotonic() + self.settings.rx_window_ms / 1000.0
            elif x:
                wait = x
        if self.wifi is not None:
            up.wifi = True
            tried = True
            data = self.wifi.exchange(frames.encode_uplink(self.key, up))
            if data is not None:
                self.answer(data, "wifi")
        return tried, wait

    def close(self):
        """Nothing waits for an answer any more: the receive window ends."""
        self.rx_until = None

    def poll(self, now):
        """A packet heard in the receive window, or None; the window ends at ``rx_until``."""
        if self.rx_until is None:
            return None
        if self.lora is not None and now < self.rx_until:
            return self.lora.poll(0.01)
        self.rx_until = None
        return None
