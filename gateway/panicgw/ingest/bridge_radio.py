"""The bridge's radio settings: the gateway's ``[serial]`` radio pushed with CONFIG, and the
bridge's STATUS compared with it (contract C6).

The bridge (firmware/lib/panicbridge) takes CONFIG as JSON with the keys of
``panicbridge.config`` (frequency_mhz, sf, bw_hz, cr, tx_power) and reports the same keys
under ``radio`` in its STATUS (``radio`` is null when its radio failed at start); the
comparison is :mod:`panicgw.radio`, diag's too. It answers a CONFIG with STATUS (applied)
or with LOG "config rejected: ..." under the CONFIG's seq. :class:`RadioConfig` is that
exchange's state, as the status API shows it:
``not_sent | sent | applied | mismatch | rejected | no_reply``.
"""

from __future__ import annotations

import time
from typing import Any

from panicgw.radio import BRIDGE_KEYS

CONFIG_REPLY_S = 3.0  # the bridge answers CONFIG at once; no answer by then = "no_reply"
CONFIG_RETRY_S = 30.0  # re-push after no reply, or when a STATUS shows other settings


def radio_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The CONFIG message for the bridge from ``[serial]``."""
    return {name: float(cfg[key]) if key == "frequency_mhz" else int(cfg[key])
            for key, name in BRIDGE_KEYS.items()}


class RadioConfig:
    """Where pushing the gateway's radio settings to the bridge stands."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.settings = radio_config(cfg)
        self.state = "not_sent"
        self.detail: str | None = None
        self.at: float | None = None  # wall-clock time of the last verdict
        self.sent = 0
        self.seq: int | None = None  # the CONFIG waiting for its answer
        self.sent_mono = 0.0

    def reset(self) -> None:
        """A new connection: nothing sent on it yet."""
        self.seq = None
        self.state = "not_sent"

    def pushed(self, seq: int | None) -> None:
        """A CONFIG was queued with ``seq`` (None: it could not be queued)."""
        self.sent_mono = time.monotonic()
        if seq is None:
            return
        self.seq = seq
        self.sent += 1
        self.state, self.detail = "sent", None

    def due(self, now: float) -> bool:
        """Push (again) now: no reply, or other settings reported, for CONFIG_RETRY_S."""
        return (self.state in ("no_reply", "mismatch")
                and now - self.sent_mono > CONFIG_RETRY_S)

    def timed_out(self, now: float) -> bool:
        """The CONFIG went unanswered for CONFIG_REPLY_S: the state becomes ``no_reply``."""
        if self.state != "sent" or now - self.sent_mono <= CONFIG_REPLY_S:
            return False
        self.state = "no_reply"
        self.detail = (f"no answer to CONFIG within {CONFIG_REPLY_S:g} s: "
                       "bridge firmware too old or busy")
        self.at = time.time()
        return True

    def rejected(self, seq: int, text: str) -> bool:
        """A bridge LOG line: True when it refuses our CONFIG (the state is then
        ``rejected``)."""
        if self.seq is None or seq != self.seq or not text.startswith("config rejected"):
            return False
        self.seq = None
        self.state, self.detail = "rejected", text[:300]
        self.at = time.time()
        return True

    def answered(self, seq: int, mismatches: list[str]) -> bool:
        """A STATUS: when it answers our CONFIG, the state becomes ``applied`` or
        ``mismatch``; True when it is ``applied`` by this answer."""
        if self.seq is None or seq != self.seq:
            return False
        self.seq = None
        self.at = time.time()
        if mismatches:
            self.state = "mismatch"
            self.detail = "the bridge accepted CONFIG but reports " + ", ".join(mismatches)
            return False
        self.state, self.detail = "applied", None
        return True

    def changed(self, mismatches: list[str]) -> bool:
        """A later STATUS shows other settings than applied (a bridge reset keeps the USB
        link up): the state becomes ``mismatch``; True when it is time to push again."""
        if self.state != "applied":
            return False
        self.state = "mismatch"
        self.detail = "bridge reported other settings: " + ", ".join(mismatches)
        return time.monotonic() - self.sent_mono > CONFIG_RETRY_S

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, "at": self.at, "sent": self.sent,
                "settings": dict(self.settings)}
