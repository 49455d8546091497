"""Bridge radio-settings checks for the 64 KB heap run (the full bridge suite is
tests/firmware/mp96/mp96_test_bridge.py, run with a 96 KB heap)."""

from mp_test_button_fakes import unload


def test_config_checks():
    unload()
    from panicbridge import config

    assert config.check({"sf": 10, "frequency_mhz": 921.4}) == {"sf": 10, "frequency_mhz": 921.4}
    for bad in ({"sf": 13}, {"bw_hz": 100}, {"x": 1}, {"tx_power": "9"}, [], {"cr": 4.5}):
        try:
            config.check(bad)
            raise AssertionError("accepted")
        except ValueError:
            pass
    assert config.from_settings({"PB_SF": "10"})["sf"] == 10


def test_zz_release():
    from mp_test_button_fakes import release

    release(globals())
