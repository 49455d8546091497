"""``alarm``: PinAlarm/TimeAlarm, light sleep, deep sleep and ``sleep_memory``.

Deep sleep raises ``DeepSleepRequest``, which ends code.py; the board waits for one of
the alarms (``SimBoard._sleep_until``) and runs code.py again with ``wake_alarm`` set and
sleep memory kept. The alarm classes are the board's, the same across its runs, so
``isinstance(alarm.wake_alarm, alarm.time.TimeAlarm)`` holds after a wake.
"""

from types import SimpleNamespace


class DeepSleepRequest(BaseException):
    def __init__(self, alarms) -> None:
        super().__init__("deep sleep")
        self.alarms = alarms


def _classes(b) -> tuple:
    class PinAlarm:
        def __init__(self, pin, value: bool, edge: bool = False, pull: bool = False) -> None:
            self.pin = pin
            self.value = value

        def fired(self) -> bool:
            return self.pin.level == self.value

    class TimeAlarm:
        def __init__(self, *, monotonic_time=None, epoch_time=None) -> None:
            self.monotonic_time = monotonic_time

        def fired(self) -> bool:
            return b.clock.now() >= self.monotonic_time

    return PinAlarm, TimeAlarm


def module(b) -> SimpleNamespace:
    if b._alarm_classes is None:
        b._alarm_classes = _classes(b)
    PinAlarm, TimeAlarm = b._alarm_classes

    def light_sleep_until_alarms(*alarms):
        return b.wait_alarms(alarms)

    def exit_and_deep_sleep_until_alarms(*alarms, preserve_dios=()):
        raise DeepSleepRequest(alarms)

    return SimpleNamespace(
        pin=SimpleNamespace(PinAlarm=PinAlarm), time=SimpleNamespace(TimeAlarm=TimeAlarm),
        sleep_memory=b.sleep_memory, wake_alarm=b.wake_alarm,
        light_sleep_until_alarms=light_sleep_until_alarms,
        exit_and_deep_sleep_until_alarms=exit_and_deep_sleep_until_alarms)
