sleep_memory = bytearray(4096)
wake_alarm = None


class _PinAlarm:
    def __init__(self, pin, value, edge=False, pull=False):
        self.pin = pin
        self.value = value


class _TimeAlarm:
    def __init__(self, monotonic_time=None, epoch_time=None):
        self.monotonic_time = monotonic_time


class pin:
    PinAlarm = _PinAlarm


class time:
    TimeAlarm = _TimeAlarm


def light_sleep_until_alarms(*alarms):
    print("ALARM light sleep")
    return alarms[-1]


def exit_and_deep_sleep_until_alarms(*alarms, preserve_dios=()):
    print("ALARM deep sleep")
    raise SystemExit(0)
