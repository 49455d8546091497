"""One comparison of the bridge's radio settings, for the daemon and diag alike
(panicgw.radio): the firmware's keys and units only, the frequency within diag's tolerance."""

from __future__ import annotations

from panicgw import radio
from panicgw.diag.context import Thresholds

SERIAL = {"frequency_mhz": 921.4, "spreading_factor": 9, "bandwidth_hz": 125000,
          "coding_rate": 5, "tx_power_dbm": 14}
STATUS = {"radio": {"frequency_mhz": 921.4, "sf": 9, "bw_hz": 125000, "cr": 5, "tx_power": 14},
          "noise_floor_dbm": -117.5}


def test_the_bridges_own_status_matches() -> None:
    assert radio.differences(SERIAL, STATUS) == []
    assert radio.radio_mismatches(STATUS, SERIAL) == []
    assert radio.reported(STATUS) == list(SERIAL)


def test_frequency_within_diags_tolerance() -> None:
    assert Thresholds().frequency_tolerance_mhz == radio.FREQUENCY_TOLERANCE_MHZ
    near = {"radio": {**STATUS["radio"], "frequency_mhz": 921.405}}
    far = {"radio": {**STATUS["radio"], "frequency_mhz": 921.5}}
    assert radio.differences(SERIAL, near) == []
    (d,) = radio.differences(SERIAL, far)
    assert (d.key, str(d)) == ("frequency_mhz", "frequency 921.5 MHz (config 921.4)")
    assert d.status_text() == "frequency_mhz: bridge 921.5, config 921.4"


def test_other_names_and_units_are_not_the_bridges() -> None:
    """Only panicbridge's keys count: a frequency in Hz or a key alias is not compared."""
    other = {"radio": {"frequency": 921_400_000, "spreading_factor": 12, "bw": 125}}
    assert radio.differences(SERIAL, other) == [] and radio.reported(other) == []


def test_a_non_number_differs() -> None:
    (d,) = radio.differences(SERIAL, {"radio": {"sf": "nine"}})
    assert str(d) == "SF 'nine' (config 9)"
