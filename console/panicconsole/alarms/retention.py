"""How long the console keeps what it no longer needs."""

from __future__ import annotations

import sqlite3


def prune(conn: sqlite3.Connection, now: float, keep_days: int,
          session_idle_s: float = 86400.0) -> dict[str, int]:
    """Forget receipts and messages older than ``keep_days`` (>= 7: the contract's
    idempotency horizon), live-feed rows older than 2 days and expired sessions."""
    conn.execute("DELETE FROM sessions WHERE last_seen < ?", (now - session_idle_s,))
    cut = now - keep_days * 86400
    n_r = conn.execute("DELETE FROM receipts WHERE at < ?", (cut,)).rowcount
    n_m = conn.execute("DELETE FROM messages WHERE received_at < ?", (cut,)).rowcount
    n_c = conn.execute("DELETE FROM changes WHERE at < ? AND seq < (SELECT MAX(seq) FROM "
                       "changes)", (now - 2 * 86400,)).rowcount
    return {"receipts": n_r, "messages": n_m, "changes": n_c}
