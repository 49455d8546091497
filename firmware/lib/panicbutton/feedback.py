"""LED patterns. Silent by default: the LED only speaks to someone who knows the codes.

Patterns are tuples of milliseconds: on, off, on, off, ...

* STORED (gateway holds the alarm): one 60 ms flicker.
* POLICE NOTIFIED (gateway says dispatch confirmed the alarm: ACK DELIVERED): three
  60 ms flickers 0.7 s apart, once.
* TEST confirmed: two 60 ms flickers.
* No confirmation after the first retries: three 150 ms blinks (repeats each slow retry
  of a TEST; once for an alarm, to stay discreet).
* TEST given up: one 1 s glow.
* Configuration error code N: N blinks of 300 ms, 2 s pause, repeated (see ERROR_*).
"""

STORED = (60,)
POLICE_NOTIFIED = (60, 700, 60, 700, 60)
TEST_OK = (60, 200, 60)
NO_CONFIRM = (150, 150, 150, 150, 150)
TEST_FAILED = (1000,)

# Error codes: number of blinks. docs/firmware.md lists the fixes.
ERROR_SETTINGS = 2  # settings.toml missing or invalid
ERROR_NOT_PROVISIONED = 3  # no device id / key in NVM
ERROR_RADIO = 4  # LoRa radio configured but not found
ERROR_NO_PATH = 5  # no usable path (no radio, no Wi-Fi settings)
ERROR_COUNTER = 6  # counter space exhausted: panictool rekey
ERROR_NAMES = {
    ERROR_SETTINGS: "settings",
    ERROR_NOT_PROVISIONED: "not_provisioned",
    ERROR_RADIO: "radio",
    ERROR_NO_PATH: "no_path",
    ERROR_COUNTER: "counter_exhausted",
}


def error_pattern(code):
    p = []
    for _ in range(code):
        p.append(300)
        p.append(300)
    p[-1] = 2000
    return tuple(p)


class Player:
    """Plays one pattern without blocking; ``update(now)`` returns the LED state."""

    def __init__(self):
        self.pattern = ()
        self.start = 0.0
        self.repeat = False

    def play(self, pattern, now, repeat=False):
        self.pattern = pattern
        self.start = now
        self.repeat = repeat

    def busy(self):
        return bool(self.pattern)

    def update(self, now):
        if not self.pattern:
            return False
        total = 0
        for ms in self.pattern:
            total += ms
        if total <= 0:
            self.pattern = ()
            return False
        t = (now - self.start) * 1000.0
        if t >= total:
            if not self.repeat:
                self.pattern = ()
                return False
            t = t % total
        acc = 0
        for i in range(len(self.pattern)):
            acc += self.pattern[i]
            if t < acc:
                return i % 2 == 0
        return False
