# CircuitPython's keypad.Keys over the stand-in pins: an event per level change the host
# drove (hwlink), as the background scanner records them; a key held when Keys is made
# reports a press. Timestamps are supervisor.ticks_ms() of the change.
import time

import hwlink
import supervisor


class Event:
    def __init__(self, key_number=0, pressed=True, timestamp=0):
        self.key_number = key_number
        self.pressed = pressed
        self.released = not pressed
        self.timestamp = timestamp


class _Events:
    def __init__(self, keys):
        self._keys = keys

    def _next(self):
        hwlink.pump()
        k = self._keys
        if k.pending:
            return k.pending.pop(0)
        for i in range(len(k.pins)):
            pin = k.pins[i]
            while k.seen[i] < pin.seq:
                back = pin.seq - k.seen[i]
                k.seen[i] += 1
                if back > len(pin.changes):
                    continue  # older than the pin keeps: a real Keys' queue overflowed
                t, level = pin.changes[-back]
                pressed = level == k.value_when_pressed
                if pressed != k.state[i]:
                    k.state[i] = pressed
                    return i, pressed, t
        return None

    def _stamp(self, t):
        return (supervisor.ticks_ms() - int((time.monotonic() - t) * 1000)) & ((1 << 29) - 1)

    def get(self):
        n = self._next()
        if n is None:
            return None
        return Event(n[0], n[1], self._stamp(n[2]))

    def get_into(self, event):
        n = self._next()
        if n is None:
            return False
        event.key_number = n[0]
        event.pressed = n[1]
        event.released = not n[1]
        event.timestamp = self._stamp(n[2])
        return True

    def clear(self):
        while self._next() is not None:
            pass


class Keys:
    def __init__(self, pins, value_when_pressed=False, pull=True, interval=0.02,
                 max_events=64):
        self.pins = list(pins)
        self.value_when_pressed = value_when_pressed
        self.seen = [p.seq for p in self.pins]
        self.state = [False] * len(self.pins)
        self.pending = []  # (key, pressed, t) reported before any change
        now = time.monotonic()
        for i in range(len(self.pins)):  # a key held at start reports a press
            if self.pins[i].level == value_when_pressed:
                self.state[i] = True
                self.pending.append((i, True, now))
        self.events = _Events(self)

    def deinit(self):
        pass
