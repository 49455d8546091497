from mp_test_button_fakes import Rand

from panicbutton import policy

ALARM, HEARTBEAT, TEST, TAMPER = 1, 3, 4, 5


def test_backoff_schedule_bounds():
    for r in range(1, 7):
        base = min(2 ** (r - 1), 32)
        assert policy.backoff_s(r, lambda: 0.0) == base * 0.5
        assert abs(policy.backoff_s(r, lambda: 0.999999) - base * 1.5) < 1e-3
    for r in (7, 8, 50):
        assert 45 <= policy.backoff_s(r, lambda: 0.0) <= 75
        assert 45 <= policy.backoff_s(r, lambda: 0.999) <= 75


def test_retry_schedule_with_fake_clock():
    box = policy.Outbox(Rand((0.5,)))
    m = box.add(policy.Message(ALARM, 42, 0.0))
    now = 0.0
    times = []
    for _ in range(10):
        assert box.due(now) is m
        times.append(now)
        box.sent(m, now)
        assert box.due(now) is None
        now = m.next_due
    gaps = [times[i + 1] - times[i] for i in range(len(times) - 1)]
    assert gaps[:6] == [1, 2, 4, 8, 16, 32]
    assert gaps[6:] == [60, 60, 60]
    assert m.counter == 42


def test_alarm_is_never_abandoned():
    box = policy.Outbox(Rand())
    m = box.add(policy.Message(ALARM, 1, 0.0))
    now = 0.0
    for _ in range(200):
        box.sent(m, now)
        now = m.next_due
        box.expire(now)
    assert m in box.items and box.abandoned == 0


def test_test_and_heartbeat_give_up():
    box = policy.Outbox(Rand())
    t = box.add(policy.Message(TEST, 1, 0.0))
    h = box.add(policy.Message(HEARTBEAT, 2, 0.0))
    now = 0.0
    for _ in range(20):
        for m in (t, h):
            if m in box.items and box.due(now) is m:
                box.sent(m, now)
        now += 100
        box.expire(now)
    assert box.items == [] and box.abandoned == 2
    assert t.attempts == 8 and h.attempts == 3


def test_priority_and_heartbeat_never_starves_alarm():
    box = policy.Outbox(Rand())
    h = box.add(policy.Message(HEARTBEAT, 1, 0.0))
    t = box.add(policy.Message(TEST, 2, 0.0))
    a = box.add(policy.Message(ALARM, 3, 0.0))
    tam = box.add(policy.Message(TAMPER, 4, 0.0))
    assert box.due(0.0) is a
    box.sent(a, 0.0)
    assert box.due(0.0) is tam
    box.remove(tam)
    assert box.due(0.0) is t
    box.remove(t)
    assert box.due(0.0) is None  # heartbeat waits while the alarm is unacknowledged
    box.remove(a)
    assert box.due(0.0) is h


def test_hurry_and_counters_unique_per_kind():
    box = policy.Outbox(Rand())
    a = box.add(policy.Message(ALARM, 5, 0.0))
    box.sent(a, 0.0)
    assert box.hurry(ALARM, 0.5) is a and a.next_due == 0.5
    assert box.find_counter(5) is a and box.find_counter(6) is None


def test_zz_release():
    from mp_test_button_fakes import release

    release(globals())


def test_next_due_is_when_due_can_return_something():
    """A heartbeat that waits behind an unacknowledged alarm is not due, so its time is
    not the loop's wake-up time either (the loop would spin until the alarm's ACK)."""
    box = policy.Outbox(Rand((0.5,)))
    h = box.add(policy.Message(HEARTBEAT, 2, 0.0))
    box.sent(h, 0.0)  # retry at 1.0
    a = box.add(policy.Message(ALARM, 3, 0.5))
    box.sent(a, 0.5)  # retry at 1.5
    assert box.due(1.2) is None and box.next_due() == 1.5
    box.remove(a)
    assert box.next_due() == 1.0 and box.due(1.2) is h
