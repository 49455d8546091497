"""Message handling half of the button app: presses, sending attempts, downlinks.

Split from app.py so neither file needs a large parse tree when CircuitPython compiles
the source on the device (docs/firmware.md, "RAM budget").
"""

from panicbutton import feedback, policy
from panicproto import frames
from panicproto.frames import ACK, ALARM, CANCEL, HEARTBEAT, RESYNC, TAMPER, TEST

BATTERY_EVERY_S = 60


class Messaging:
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

