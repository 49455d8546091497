"""Message handling half of the button app: presses, sending attempts, downlinks.

Split from app.py so neither file needs a large parse tree when CircuitPython compiles
the source on the device (docs/firmware.md, "RAM budget").
"""

from panicbutton import feedback, policy
from panicproto import frames
from panicproto.frames import ACK, ALARM, CANCEL, DELIVERED, HEARTBEAT, RESYNC, TAMPER, TEST

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
            self.confirming = None  # stop asking whether the cancelled alarm was delivered
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

    def _send(self, kind, counter, attempt, now, duty):
        """One transmission of a frame on every path: (tried, wait_s). ``duty`` is the kind
        whose share of the LoRa duty-cycle budget it may use (ALARM all, others half)."""
        mv = self._battery_mv(now)
        low = mv is not None and mv < self.settings.low_battery_mv
        up = frames.Uplink(kind, self.device_id, counter, attempt=min(attempt, 15),
                           low_battery=low, tamper=self.tamper, battery_mv=mv or 0)
        tried = False
        wait = 0
        if self.lora is not None:
            ok, x = self.lora.send(frames.encode_uplink(self.key, up), duty, attempt, now)
            if ok:
                tried = True
                self.rx_until = self.hal.monotonic() + self.settings.rx_window_ms / 1000.0
                self._note("lora_tx", (kind, counter, attempt, x))
            elif x:
                wait = x
        if self.wifi is not None:
            up.wifi = True
            tried = True
            self._note("wifi_tx", (kind, counter, attempt))
            body = self.wifi.exchange(frames.encode_uplink(self.key, up))
            if body is not None:
                self._on_downlink(body, "wifi")
        return tried, wait

    def _attempt(self, msg, now):
        tried, wait = self._send(msg.kind, msg.counter, msg.attempts, now, msg.kind)
        if msg not in self.outbox.items:
            msg.attempts += 1  # acknowledged during this attempt, which counts
            return
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
            c = self.confirming
            ok = msg is None and c is not None and c.counter == down.counter
            if msg is None and not ok:
                self.verifier.unmatched()
                return
            if ok:
                msg = c  # an answer to a confirmation request
            # The one console line per verified ACK (panictool verify parses it).
            x = self.lora.rx if path == "lora" and self.lora is not None else None
            self.hal.console("PANIC-BUTTON ack: %s counter=%d status=%d via %s rssi=%s "
                             "snr=%s sf=%s down=%s" % (
                                 frames.TYPE_NAMES[msg.kind], down.counter, down.status, path,
                                 str(round(x[0])) if x else "-",
                                 str(round(x[1], 1)) if x else "-", str(x[2]) if x else "-",
                                 bytes(data).hex()))
            self._note("acked", (msg.kind, msg.counter, down.status, path))
            if msg.kind == ALARM and down.status == DELIVERED:  # also as the first ACK
                self.confirming = None
                self.player.play(feedback.POLICE_NOTIFIED, now)
            if ok:
                return
            self.outbox.remove(msg)
            self.acked[msg.kind] = self.acked.get(msg.kind, 0) + 1
            if msg.kind == ALARM:
                if down.status != DELIVERED:  # STORED: ask on the slow schedule
                    msg.created = now
                    msg.next_due = now + policy.CONFIRM_AT_S[0]
                    self.confirming = msg
                    self.player.play(feedback.STORED, now)
            elif msg.kind == TEST:
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
