# CircuitPython's alarm. Light sleep waits (handling the board's wires) until an alarm
# fires. Deep sleep with a host harness is CircuitPython's deep sleep with USB connected:
# it says so, waits for an alarm (Ctrl-C stops it, as on a board), and code.py runs again
# from the top with ``wake_alarm`` set (launch.py); RAM is lost, sleep memory kept.
# Without a harness (the boot gate) deep sleep ends the run.
import time as _time

import gate_config
import hwlink

if getattr(gate_config, "SLEEP_FILE", None):  # a board harness: kept across soft reboots
    from filebytes import FileBytes

    sleep_memory = FileBytes(gate_config.SLEEP_FILE)
else:
    sleep_memory = bytearray(4096)
wake_alarm = None


class _PinAlarm:
    """Fires when the pin is at ``value`` or went there since the alarm was made: the
    chip latches a press however short, even one already released when the sleep
    loop looks."""

    def __init__(self, pin, value, edge=False, pull=False):
        self.pin = pin
        self.value = value
        self._seq = pin.seq

    def fired(self):
        if self.pin.level == self.value:
            return True
        new = self.pin.seq - self._seq
        for _t, level in self.pin.changes[-new:] if new > 0 else ():
            if level == self.value:
                return True
        return False


class _TimeAlarm:
    def __init__(self, monotonic_time=None, epoch_time=None):
        self.monotonic_time = monotonic_time

    def fired(self):
        return _time.monotonic() >= self.monotonic_time


class pin:
    PinAlarm = _PinAlarm


class time:
    TimeAlarm = _TimeAlarm


def _wait(alarms):
    fired = []

    def done():
        for a in alarms:
            if a.fired():
                fired.append(a)
                return True
        return False

    while not hwlink.wait(3600, done):
        pass
    return fired[0]


def light_sleep_until_alarms(*alarms):
    return _wait(alarms)


def exit_and_deep_sleep_until_alarms(*alarms, preserve_dios=()):
    if not hwlink.linked():
        print("ALARM deep sleep")
        raise SystemExit(0)
    print("Pretending to deep sleep until alarm, CTRL-C or file write.")
    fired = _wait(alarms)
    print("Woken up by alarm.")
    raise hwlink.Wake(fired)
