from panicbutton.classifier import Classifier
from panicproto.frames import ALARM, CANCEL, TEST


def _clicks(c, n, t=0.0, hold=0.2, gap=0.3):
    events = []
    for _ in range(n):
        for ev in (c.feed(True, t), c.update(t + hold / 2), c.feed(False, t + hold)):
            if ev is not None:
                events.append(ev)
        t += hold + gap
    return events, t


def test_long_press_fires_alarm_at_threshold_while_held():
    c = Classifier(hold_s=1.5)
    assert c.feed(True, 10.0) is None
    assert c.update(11.4) is None
    assert c.update(11.5) == ALARM
    assert c.update(12.0) is None  # fires once per press
    assert c.feed(False, 13.0) is None
    assert c.update(20.0) is None


def test_release_after_threshold_without_tick_still_alarms():
    c = Classifier(hold_s=1.5)
    c.feed(True, 0.0)
    assert c.feed(False, 2.0) == ALARM


def test_bumps_do_nothing():
    c = Classifier(hold_s=1.5)
    for hold in (0.05, 0.5, 1.49):
        c.feed(True, 0.0)
        assert c.update(hold - 0.01) is None
        assert c.feed(False, hold) is None
        assert c.update(hold + 5) is None
        assert not c.busy()


def test_five_clicks_is_test():
    c = Classifier()
    ev, t = _clicks(c, 5)
    assert ev == []
    assert c.update(t + 0.5) is None  # still within the gap
    assert c.update(t + 1.0) == TEST


def test_other_click_counts_do_nothing():
    for n in (1, 2, 3, 4, 6, 7, 8, 9):
        c = Classifier()
        ev, t = _clicks(c, n)
        assert c.update(t + 2) is None, n


def test_cancel_only_when_enabled():
    c = Classifier(cancel_clicks=8)
    _, t = _clicks(c, 8)
    assert c.update(t + 2) == CANCEL
    c = Classifier()
    _, t = _clicks(c, 8)
    assert c.update(t + 2) is None


def test_clicks_then_hold_is_alarm():
    c = Classifier()
    _, t = _clicks(c, 4)
    c.feed(True, t)
    assert c.update(t + 1.5) == ALARM
    c.feed(False, t + 3)
    assert c.update(t + 10) is None


def test_slow_clicks_do_not_chain():
    c = Classifier()
    ev, t = _clicks(c, 5, gap=1.5)  # gaps longer than 1 s: five separate bumps
    for k in range(5):
        assert c.update(t + k) is None
    assert ev == []


def test_release_without_press_and_duplicate_press_ignored():
    c = Classifier()
    assert c.feed(False, 1.0) is None
    c.feed(True, 2.0)
    assert c.feed(True, 2.5) is None
    assert c.update(3.5) == ALARM


def test_wake_pressed_counts_from_wake():
    c = Classifier()
    c.wake_pressed(100.0)
    c.feed(True, 100.2)  # keypad reports the held key again: not a new press
    assert c.update(101.5) == ALARM


def test_zz_release():
    from mp_test_button_fakes import release

    release(globals())
