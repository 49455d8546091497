"""The bridge's radio settings against ``[serial]``: one comparison, for the daemon that
pushes the settings (CONFIG, then checks the STATUS it gets back) and for `panicgw diag`.

A bridge reports its settings in its STATUS, ``{"radio": {"frequency_mhz", "sf", "bw_hz",
"cr", "tx_power"}}`` (panicbridge); other spellings and units are accepted (a frequency in
Hz, a bandwidth in kHz), so a value is looked up under each of its names, also in nested
objects, and normalised to the config's unit before comparing. A value the bridge does not
report, or reports as something other than a number, is not compared.

Public for the daemon and the tools (like ``panicgw.ports``): it imports nothing else of
the gateway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

FREQUENCY_TOLERANCE_MHZ = 0.01

RADIO_KEYS: dict[str, tuple[str, ...]] = {
    # config key -> names a bridge STATUS may use for it
    "frequency_mhz": ("frequency_mhz", "frequency", "freq_mhz", "freq"),
    "spreading_factor": ("spreading_factor", "sf"),
    "bandwidth_hz": ("bandwidth_hz", "bandwidth", "bw_hz", "bw"),
    "coding_rate": ("coding_rate", "cr"),
    "tx_power_dbm": ("tx_power_dbm", "tx_power", "power_dbm", "power"),
}


@dataclass(frozen=True)
class Difference:
    """One setting the bridge has otherwise than ``[serial]``: ``have`` in the config's
    unit for the frequency (MHz) and bandwidth (Hz), as reported for the others."""

    key: str
    have: int | float
    want: Any

    def __str__(self) -> str:
        if self.key == "frequency_mhz":
            return f"frequency {self.have:g} MHz (config {self.want:g})"
        if self.key == "bandwidth_hz":
            return f"bandwidth {self.have:g} Hz (config {self.want})"
        label = {"spreading_factor": "SF", "tx_power_dbm": "TX power",
                 "coding_rate": "coding rate 4/"}[self.key]
        return f"{label} {self.have} (config {self.want})"


def find(doc: Any, names: Iterable[str]) -> Any:
    """First value under any of ``names`` in a dict or its nested dicts (``radio``, ...)."""
    if not isinstance(doc, dict):
        return None
    names = tuple(names)
    for n in names:
        if n in doc and not isinstance(doc[n], dict):
            return doc[n]
    for v in doc.values():
        if isinstance(v, dict):
            found = find(v, names)
            if found is not None:
                return found
    return None


def reported(status: dict[str, Any]) -> list[str]:
    """The ``[serial]`` keys the bridge's STATUS reports at all."""
    return [k for k, names in RADIO_KEYS.items() if find(status, names) is not None]


def differences(cfg_serial: dict[str, Any], status: dict[str, Any],
                tol_mhz: float = FREQUENCY_TOLERANCE_MHZ) -> list[Difference]:
    """Every setting of ``cfg_serial`` that the bridge's ``status`` reports otherwise."""
    out = []
    for key, names in RADIO_KEYS.items():
        have = find(status, names)
        if have is None or isinstance(have, bool) or not isinstance(have, int | float):
            continue
        want = cfg_serial[key]
        if key == "frequency_mhz":
            h = float(have)
            if h > 1e5:  # reported in Hz
                h /= 1e6
            if abs(h - float(want)) > tol_mhz:
                out.append(Difference(key, h, want))
        elif key == "bandwidth_hz":
            h = float(have)
            if h < 1000:  # reported in kHz
                h *= 1000
            if abs(h - float(want)) > 1:
                out.append(Difference(key, h, want))
        elif int(have) != int(want):
            out.append(Difference(key, have, want))
    return out
