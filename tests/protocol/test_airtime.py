"""Airtime formula, regional limits and the duty-cycle budget."""

import pytest

from panicproto import airtime as at


def test_design_figures() -> None:
    assert at.time_on_air_ms(19, 9) == pytest.approx(185.3, abs=0.1)
    assert at.time_on_air_ms(19, 10) == pytest.approx(329.7, abs=0.1)
    assert at.time_on_air_ms(19, 12) == pytest.approx(1318.9, abs=0.1)


def test_low_data_rate_optimisation_is_automatic_from_16ms_symbols() -> None:
    assert at.symbol_ms(11) == pytest.approx(16.384)
    assert at.time_on_air_ms(19, 11) == at.time_on_air_ms(19, 11, low_dr_opt=True)
    assert at.time_on_air_ms(19, 11) != at.time_on_air_ms(19, 11, low_dr_opt=False)
    assert at.time_on_air_ms(19, 10) == at.time_on_air_ms(19, 10, low_dr_opt=False)


def test_as923_dwell_allows_sf10_not_sf11() -> None:
    r = at.region("as923-2")
    assert r.allows(19, 10) and not r.allows(19, 11)
    assert r.slowest_sf(19) == 10
    assert at.region("EU868").slowest_sf(19) == 12
    assert r.check_frequency(921.4) and not r.check_frequency(868.1)


def test_unknown_region_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="AS923-2"):
        at.region("mars")


def test_bad_arguments() -> None:
    for kwargs in ({"sf": 13}, {"sf": 9, "cr": 4}, {"sf": 9, "payload_len": 256}):
        with pytest.raises(ValueError):
            at.time_on_air_ms(**({"payload_len": 19} | kwargs))


def test_duty_cycle_rolls_over_the_hour() -> None:
    d = at.DutyCycle(0.01)
    assert d.budget_ms() == 36000
    sent = 0
    t = 0.0
    while d.can_send(t, 1000):
        d.record(t, 1000)
        sent += 1
        t += 10
    assert sent == 36
    wait = d.wait_s(t, 1000)
    assert 0 < wait <= 3600
    assert not d.can_send(t + wait - 61, 1000)  # the clock is monotonic: ask earlier first
    assert d.can_send(t + wait, 1000)


def test_no_duty_limit() -> None:
    d = at.DutyCycle(None)
    assert d.can_send(0, 1e9) and d.wait_s(0, 1e9) == 0
