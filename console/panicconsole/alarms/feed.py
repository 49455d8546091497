"""The live feed: each change is a row of ``changes`` written in the same transaction as
the change itself, so a screen that replays the feed after the last number it saw neither
misses nor repeats one."""

from __future__ import annotations

import sqlite3
from typing import Any

from panicconsole.alarms.jsoncol import dumps
from panicconsole.alarms.views import alarm_view, gateway_view


def change(conn: sqlite3.Connection, now: float, kind: str, data: dict[str, Any]) -> None:
    conn.execute("INSERT INTO changes (at, kind, data) VALUES (?, ?, ?)",
                 (now, kind, dumps(data)))


def emit_alarm(conn: sqlite3.Connection, alarm_id: int, now: float) -> dict[str, Any]:
    view = alarm_view(conn, alarm_id)
    assert view is not None
    change(conn, now, "alarm", view)
    return view


def emit_gateway(conn: sqlite3.Connection, gateway_id: str, now: float) -> None:
    view = gateway_view(conn, gateway_id)
    if view is not None:
        change(conn, now, "gateway", view)
