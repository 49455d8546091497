"""The queue's vocabulary: priorities, which restore ends which trouble, how a line is closed,
and the refusal an operator's action gets."""

from __future__ import annotations

from typing import Any

PRIORITY = {"panic": 1, "tamper": 2, "supervision_lost": 3, "low_battery": 3,
            "gateway_trouble": 3, "gateway_silent": 3}
PRIO_RESTORED = 4
RESTORES = {"supervision_restore": "supervision_lost", "low_battery_restore": "low_battery",
            "gateway_trouble_restore": "gateway_trouble"}
# Troubles of one device (or gateway) update one line while it is open, like repeat presses.
MERGE_BY_SOURCE = ("supervision_lost", "low_battery", "gateway_trouble", "gateway_silent")
DISPOSITIONS = ("real", "false", "test", "cancelled", "technical", "duplicate")
MAX_NOTE = 2000
SYSTEM = {"id": None, "username": "system", "role": "system"}


class ActionError(Exception):
    """An operator's action that the rules refuse; ``status`` is the HTTP answer, ``code`` a
    message-catalogue key, ``detail`` the facts (e.g. the owner's name)."""

    def __init__(self, status: int, code: str, **detail: Any) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail
