"""``keypad``: Keys scanning board pins; events come from the levels the simulator drove
(``Pin.changes``), timestamped on the simulated clock."""

from types import SimpleNamespace


class Event:
    def __init__(self, key_number=0, pressed=True, timestamp=None) -> None:
        self.key_number = key_number
        self.pressed = pressed
        self.released = not pressed
        self.timestamp = timestamp


def module(b) -> SimpleNamespace:
    class _Events:
        def __init__(self, keys: "Keys") -> None:
            self.keys = keys

        def _next(self):
            b.check_alive()
            k = self.keys
            for i, pin in enumerate(k.pins):
                ch = pin.changes
                while k.seen[i] < len(ch):
                    t, level = ch[k.seen[i]]
                    k.seen[i] += 1
                    pressed = level == k.value_when_pressed
                    if pressed != k.state[i]:
                        k.state[i] = pressed
                        return i, pressed, t
            return None

        def get(self):
            n = self._next()
            if n is None:
                return None
            return Event(n[0], n[1], int(n[2] * 1000))

        def get_into(self, ev) -> bool:
            n = self._next()
            if n is None:
                return False
            ev.key_number, ev.pressed, ev.released = n[0], n[1], not n[1]
            ev.timestamp = int(n[2] * 1000) & (2**29 - 1)  # ticks_ms, as keypad stamps
            return True

        def clear(self) -> None:
            while self._next():
                pass

    class Keys:
        def __init__(self, pins, *, value_when_pressed, pull=True, interval=0.02,
                     max_events=64, debounce_threshold=1) -> None:
            self.pins = list(pins)
            self.value_when_pressed = value_when_pressed
            self.seen = [len(p.changes) for p in self.pins]
            self.state = [False] * len(self.pins)
            now = b.clock.now()
            for i, p in enumerate(self.pins):  # a key held at start reports a press
                if p.level == value_when_pressed:
                    p.changes.insert(self.seen[i], (now, p.level))
            self.events = _Events(self)

        def deinit(self) -> None:
            pass

    return SimpleNamespace(Keys=Keys, Event=Event)
