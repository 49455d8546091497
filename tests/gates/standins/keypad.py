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
        for i in range(len(k.pins)):
            ch = k.pins[i].changes
            if k.seen[i] > len(ch):  # the pin's history was trimmed
                k.seen[i] = len(ch)
            while k.seen[i] < len(ch):
                t, level = ch[k.seen[i]]
                k.seen[i] += 1
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
        self.seen = [len(p.changes) for p in self.pins]
        self.state = [False] * len(self.pins)
        now = time.monotonic()
        for i in range(len(self.pins)):  # a key held at start reports a press
            p = self.pins[i]
            if p.level == value_when_pressed:
                p.changes.append((now, p.level))
        self.events = _Events(self)

    def deinit(self):
        pass
