"""The bridge's radio settings against ``[serial]``: one rule, for the daemon that pushes the
settings (CONFIG, then checks the STATUS it gets back, ingest/bridge_radio.py) and for
`panicgw diag` (diag/checks/radio.py).

The bridge (firmware/lib/panicbridge) takes CONFIG as JSON with the keys of
``panicbridge.config`` (frequency_mhz, sf, bw_hz, cr, tx_power) and reports the same keys,
in the same units, under ``radio`` in its STATUS. A setting the bridge does not report is
not compared; one it reports as something other than a number differs. The frequency may
differ by :data:`FREQUENCY_TOLERANCE_MHZ` (diag's ``frequency_tolerance_mhz`` threshold), the
others not at all.

Public for the daemon and the tools (like ``panicgw.ports``): it imports nothing else of
the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FREQUENCY_TOLERANCE_MHZ = 0.01

# [serial] config key -> the bridge's key for it (CONFIG and STATUS alike).
BRIDGE_KEYS = {
    "frequency_mhz": "frequency_mhz",
    "spreading_factor": "sf",
    "bandwidth_hz": "bw_hz",
    "coding_rate": "cr",
    "tx_power_dbm": "tx_power",
}
_LABELS = {"frequency_mhz": "frequency", "spreading_factor": "SF", "bandwidth_hz": "bandwidth",
           "coding_rate": "coding rate 4/", "tx_power_dbm": "TX power"}
_UNITS = {"frequency_mhz": " MHz", "bandwidth_hz": " Hz"}


@dataclass(frozen=True)
class Difference:
    """One setting the bridge has otherwise than ``[serial]`` (``have`` as reported)."""

    key: str
    have: Any
    want: Any

    def __str__(self) -> str:
        """For diag's findings: ``SF 10 (config 9)``."""
        have = f"{self.have:g}" if _is_number(self.have) else repr(self.have)
        want = f"{self.want:g}" if self.key == "frequency_mhz" else f"{self.want}"
        label = _LABELS[self.key]
        sep = "" if label.endswith("/") else " "
        return f"{label}{sep}{have}{_UNITS.get(self.key, '')} (config {want})"

    def status_text(self) -> str:
        """For the daemon's status API and log (``radio_mismatches``), by config key."""
        return f"{self.key}: bridge {self.have}, config {self.want}"


def settings(status: dict[str, Any]) -> dict[str, Any]:
    """The radio settings in a bridge STATUS (its ``radio`` part), or ``status`` itself when
    it is that part already."""
    radio = status.get("radio")
    return radio if isinstance(radio, dict) else status


def reported(status: dict[str, Any]) -> list[str]:
    """The ``[serial]`` keys the bridge's STATUS reports at all."""
    radio = settings(status)
    return [k for k, name in BRIDGE_KEYS.items() if radio.get(name) is not None]


def differences(cfg_serial: dict[str, Any], status: dict[str, Any],
                tol_mhz: float = FREQUENCY_TOLERANCE_MHZ) -> list[Difference]:
    """Every setting of ``cfg_serial`` that the bridge's ``status`` reports otherwise."""
    radio = settings(status)
    out = []
    for key, name in BRIDGE_KEYS.items():
        have = radio.get(name)
        if have is None or key not in cfg_serial:
            continue
        want = cfg_serial[key]
        if not _is_number(have):
            out.append(Difference(key, have, want))
        elif key == "frequency_mhz":
            if abs(float(have) - float(want)) > tol_mhz:
                out.append(Difference(key, have, want))
        elif float(have) != float(want):
            out.append(Difference(key, have, want))
    return out


def radio_mismatches(status: dict[str, Any], cfg_serial: dict[str, Any]) -> list[str]:
    """The daemon's view of :func:`differences`: one line per setting, by config key."""
    return [d.status_text() for d in differences(cfg_serial, status)]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
