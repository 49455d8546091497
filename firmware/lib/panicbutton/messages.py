"""The life of each message: what a press (or the enclosure, or the heartbeat schedule)
queues, its sending attempts and retries, and what a verified ACK or RESYNC does to it.
After an alarm's STORED ACK, ``confirm`` asks for DELIVERED."""

from panicbutton import feedback, policy
from panicbutton.confirm import Confirm
from panicbutton.downlink import Verifier
from panicproto import frames
from panicproto.frames import ALARM, CANCEL, DELIVERED, HEARTBEAT, RESYNC, TAMPER, TEST


class Messages:
    def __init__(self, hal, sender, counter, player):
        self.hal = hal
        self.sender = sender
        self.counter = counter
        self.player = player
        self.outbox = policy.Outbox(hal.rand)
        self.verifier = Verifier(sender.key, sender.device_id)
        self.confirm = Confirm(hal, sender)
        self.acked = {}  # acknowledged messages per kind
        sender.answer = self.downlink

    def add(self, kind, now):
        """A new message because of a press (ALARM, TEST, CANCEL: printed), an opened
        enclosure (TAMPER) or the heartbeat schedule; None when none is queued."""
        box = self.outbox
        if kind == HEARTBEAT or kind == TAMPER:
            if box.find_kind(kind) is not None or kind == HEARTBEAT and box.has_alarm():
                return None  # one is pending; an alarm in flight proves the device alive
        elif kind == ALARM and box.hurry(ALARM, now) is not None:
            self.hal.console("PANIC-BUTTON press: alarm (repeat, resending now)")
            return None
        elif kind == CANCEL:
            m = box.find_kind(ALARM)
            if m is not None:
                box.remove(m)  # the CANCEL replaces it and is itself persistent
            self.confirm.stop()  # stop asking whether the cancelled alarm was delivered
        m = box.add(policy.Message(kind, self.counter.next(), now))
        if kind != HEARTBEAT and kind != TAMPER:
            self.hal.console("PANIC-BUTTON press: %s counter=%d" % (frames.TYPE_NAMES[kind],
                                                                    m.counter))
        return m

    def expire(self, now):
        """Drop messages that used their attempts (a TEST says so)."""
        for m in self.outbox.expire(now):
            if m.kind == TEST:
                self.hal.console("PANIC-BUTTON test not confirmed after %d attempts"
                                 % m.attempts)
                self.player.play(feedback.TEST_FAILED, now)

    def step(self, now):
        """The due message's attempt, else a confirming request."""
        msg = self.outbox.due(now)
        if msg is None:
            if not self.outbox.has_alarm():  # an unacknowledged alarm goes first
                self.confirm.step(now)
            return
        tried, wait = self.sender.send(msg.kind, msg.counter, msg.attempts, now, msg.kind)
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

    def next_due(self):
        """When the next attempt or confirming request is due (None: nothing waits)."""
        t = self.outbox.next_due()
        m = self.confirm.msg
        if m is not None and (t is None or m.next_due < t) and not self.outbox.has_alarm():
            t = m.next_due  # (an unacknowledged alarm holds confirming requests back)
        return t

    def downlink(self, data, path):
        """A downlink heard on ``path``: acted on only once verified (downlink.Verifier):
        an ACK of a message in flight or of a confirming request, or a RESYNC."""
        down = self.verifier.check(data)
        if down is None:
            return
        now = self.hal.monotonic()
        if down.kind == RESYNC:
            if self.counter.resync(down.counter):
                for m in self.outbox.items:
                    if m.counter < down.counter:
                        m.counter = self.counter.next()
                        m.next_due = now
                self.hal.console("PANIC-BUTTON resync: next counter %d" % down.counter)
            return
        msg = self.outbox.find_counter(down.counter)
        c = self.confirm.msg
        ok = msg is None and c is not None and c.counter == down.counter
        if msg is None and not ok:
            self.verifier.unmatched()
            return
        if ok:
            msg = c  # an answer to a confirmation request
        # The one console line per verified ACK (panictool verify parses it).
        x = self.sender.lora.rx if path == "lora" and self.sender.lora is not None else None
        self.hal.console("PANIC-BUTTON ack: %s counter=%d status=%d via %s rssi=%s snr=%s "
                         "sf=%s down=%s" % (frames.TYPE_NAMES[msg.kind], down.counter,
                                            down.status, path,
                                            str(round(x[0])) if x else "-",
                                            str(round(x[1], 1)) if x else "-",
                                            str(x[2]) if x else "-", bytes(data).hex()))
        if msg.kind == ALARM and down.status == DELIVERED:  # also as the first ACK
            self.confirm.stop()
            self.player.play(feedback.POLICE_NOTIFIED, now)
        if ok:
            return
        self.outbox.remove(msg)
        self.acked[msg.kind] = self.acked.get(msg.kind, 0) + 1
        if msg.kind == ALARM:
            if down.status != DELIVERED:  # STORED: ask on the slow schedule
                self.confirm.start(msg, now)
                self.player.play(feedback.STORED, now)
        elif msg.kind == TEST:
            self.player.play(feedback.TEST_OK, now)
        elif msg.kind != HEARTBEAT:
            self.player.play(feedback.STORED, now)
        if not self.outbox.items:
            self.sender.close()
