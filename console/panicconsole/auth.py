"""Accounts: argon2 password hashes, server-side sessions, CSRF tokens, login rate limits.

A session cookie is 32 random bytes; the database keeps only its SHA-256, so a copy of the
database does not log anyone in. Each session has its own CSRF token that every state
change must send back in ``X-CSRF-Token`` (the login form uses a double-submit cookie).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

LANGS = ("id", "en")
ROLES = ("operator", "supervisor", "admin")
RANK = {"operator": 0, "supervisor": 1, "admin": 2}

_ph = PasswordHasher()  # argon2id with the library's current recommended parameters
_dummy: list[str] = []


def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so the time a failed sign-in
    takes does not tell which names exist (made on first use: hashing is slow)."""
    if not _dummy:
        _dummy.append(_ph.hash(secrets.token_hex(16)))
    return _dummy[0]


class AccountError(ValueError):
    """Bad account input; the message says what to do."""


def hash_password(password: str) -> str:
    return _ph.hash(password)


def check_password_rules(password: str, min_len: int) -> None:
    if len(password) < min_len:
        raise AccountError(f"the password must be at least {min_len} characters")
    if password.strip() != password:
        raise AccountError("the password must not start or end with spaces")


def valid_username(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 64 or not all(c.isalnum() or c in "._-@" for c in name):
        raise AccountError("a username is 1-64 letters, digits, '.', '_', '-' or '@'")
    return name


def add_user(conn: sqlite3.Connection, username: str, password: str, role: str,
             *, display_name: str = "", lang: str = "id", min_len: int = 10) -> int:
    username = valid_username(username)
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if lang not in LANGS:
        raise AccountError(f"language must be one of {', '.join(LANGS)}")
    check_password_rules(password, min_len)
    now = time.time()
    try:
        cur = conn.execute(
            "INSERT INTO users (username, display_name, role, pw_hash, lang, created_at, "
            "pw_changed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (username, display_name.strip()[:120], role, hash_password(password), lang, now, now))
    except sqlite3.IntegrityError:
        raise AccountError(f"user {username!r} already exists") from None
    return int(cur.lastrowid or 0)


def set_password(conn: sqlite3.Connection, username: str, password: str, min_len: int) -> None:
    check_password_rules(password, min_len)
    cur = conn.execute("UPDATE users SET pw_hash = ?, pw_changed_at = ? WHERE username = ?",
                       (hash_password(password), time.time(), username))
    if cur.rowcount != 1:
        raise AccountError(f"no user {username!r}")
    # A new password ends every session of that user.
    conn.execute("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE "
                 "username = ?)", (username,))


def verify(conn: sqlite3.Connection, username: str, password: str) -> dict[str, Any] | None:
    """The user's row (as a dict) when the password matches an enabled account."""
    row = conn.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
    return verify_row(dict(row) if row else None, password)


def verify_row(row: dict[str, Any] | None, password: str) -> dict[str, Any] | None:
    """:func:`verify` on a row already read (argon2 is slow on purpose: run this in a
    thread, not on the event loop)."""
    if row is None:
        try:
            _ph.verify(_dummy_hash(), password)
        except VerificationError:
            pass
        return None
    try:
        _ph.verify(row["pw_hash"], password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row["disabled"]:
        return None
    user = dict(row)
    if _ph.check_needs_rehash(row["pw_hash"]):
        user["rehash"] = hash_password(password)
    return user


def public_user(row: dict[str, Any] | sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "username": row["username"],
            "name": row["display_name"] or row["username"], "role": row["role"],
            "lang": row["lang"]}


def allowed(role: str, need: str) -> bool:
    return RANK.get(role, -1) >= RANK[need]


# -- sessions ---------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_session(conn: sqlite3.Connection, user_id: int, remote: str) -> tuple[str, str]:
    """(cookie value, csrf token) of a new session."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = time.time()
    conn.execute("INSERT INTO sessions (token_hash, user_id, csrf, created_at, last_seen, "
                 "remote) VALUES (?, ?, ?, ?, ?, ?)",
                 (token_hash(token), user_id, csrf, now, now, remote))
    return token, csrf


def lookup(conn: sqlite3.Connection, token: str, idle_s: float,
           now: float) -> dict[str, Any] | None:
    """The session joined with its user, or None (unknown, idle too long, user disabled)."""
    if not token or len(token) > 200:
        return None
    row = conn.execute(
        "SELECT s.token_hash, s.csrf, s.last_seen, s.created_at, u.id, u.username, "
        "u.display_name, u.role, u.lang, u.disabled FROM sessions s JOIN users u ON "
        "u.id = s.user_id WHERE s.token_hash = ?", (token_hash(token),)).fetchone()
    if row is None or row["disabled"] or now - row["last_seen"] > idle_s:
        return None
    return dict(row)


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


# -- login rate limiting ------------------------------------------------------------------------


@dataclass
class LoginLimiter:
    """At most ``max_failures`` failed logins per username (4x that per address) within
    ``window_s``; past that every attempt is refused until the oldest failure ages out."""

    max_failures: int
    window_s: float
    _fails: dict[str, deque[float]] = field(default_factory=dict)

    def _q(self, key: str, now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    ADDRESS_FACTOR = 4  # operators behind one NAT or proxy share an address

    def _limit(self, key: str) -> int:
        return self.max_failures * (self.ADDRESS_FACTOR if key.startswith("ip:") else 1)

    def retry_after(self, keys: list[str], now: float) -> float:
        """Seconds until a login may be tried again (0: now)."""
        wait = 0.0
        for k in keys:
            q = self._q(k, now)
            if len(q) >= self._limit(k):
                wait = max(wait, q[0] + self.window_s - now)
        if len(self._fails) > 100_000:  # bounded memory under a spray of names
            for k in [k for k, q in self._fails.items() if not q]:
                del self._fails[k]
        return wait

    def failed(self, keys: list[str], now: float) -> None:
        for k in keys:
            self._q(k, now).append(now)

    def succeeded(self, keys: list[str]) -> None:
        for k in keys:
            if k.startswith("user:"):
                self._fails.pop(k, None)
