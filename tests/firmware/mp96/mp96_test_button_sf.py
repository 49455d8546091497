from panicbutton import policy
from panicproto import airtime

ALARM = 1
TEST = 4


def test_sf_ladder_respects_region():
    as923 = airtime.region("AS923-2")
    assert policy.sf_ladder(as923, 9, 12, 23) == [9, 10]
    assert policy.sf_ladder(as923, 7, 8, 23) == [7, 8]
    eu = airtime.region("EU868")
    assert policy.sf_ladder(eu, 9, 12, 23) == [9, 10, 11, 12]
    us = airtime.region("US915")
    assert policy.sf_ladder(us, 7, 12, 23) == [7, 8, 9, 10]
    for sf in policy.sf_ladder(as923, 7, 12, 23):
        assert airtime.time_on_air_ms(23, sf) <= 400


def test_sf_cycles_through_ladder():
    ladder = [9, 10]
    assert [policy.sf_for_attempt(ladder, a) for a in range(5)] == [9, 10, 9, 10, 9]


def test_duty_cycle_budget_and_alarm_reserve():
    duty = airtime.DutyCycle(0.01)  # 36 s of airtime per hour
    ladder = [9, 10]
    now = 0.0
    # Fill just over half of the budget: a TEST may no longer send, an ALARM still may.
    duty.record(now, 18500)
    sf, wait = policy.choose_sf(ladder, 0, TEST, duty, now, 23)
    assert sf is None and wait > 0
    sf, ms = policy.choose_sf(ladder, 1, ALARM, duty, now, 23)
    assert sf == 10
    duty.record(now, 36000 - 18500 - 300)  # 300 ms left: SF10 (371 ms) no longer fits
    sf, ms = policy.choose_sf(ladder, 1, ALARM, duty, now, 23)
    assert sf == 9  # falls back to the shorter SF
    duty.record(now, 200)
    sf, wait = policy.choose_sf(ladder, 1, ALARM, duty, now, 23)
    assert sf is None and 0 < wait <= 3600


def test_zz_release():
    from mp_test_button_fakes import release

    release(globals())
