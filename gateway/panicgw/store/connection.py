"""Opening the gateway DB, and the connection every repository works on.

Three ways in (``Connection.__init__``):
- the daemon's writer (and ``panicgw setup``) creates the file 0600 and migrates it;
- a tool that changes the registry (``create=False``) opens an existing file read-write and
  refuses one without the gateway's schema, so a mistyped path never becomes a second,
  unread registry;
- a tool that only looks (``readonly=True``) opens it with SQLite's ``mode=ro``: it can
  change nothing, never migrates, and is safe beside the running daemon (WAL).

Durability (docs/gateway.md): WAL with ``synchronous=FULL``, so a commit has reached the
disk before the gateway ACKs STORED. The file (and its -wal/-shm, which SQLite creates with
the same mode) is 0600: it holds device keys.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from panicgw.store import schema
from panicgw.store.errors import USE_THE_GATEWAYS_DB, StoreError


def secure_create(path: Path) -> None:
    """Create the DB file 0600 before SQLite touches it (its -wal/-shm inherit the mode).

    An existing file is never opened here: closing any descriptor on a SQLite file drops
    every POSIX lock this process holds on it, and a second connection in a running daemon
    would then let another process delete the daemon's live WAL.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)


class Connection:
    """One connection, used from one thread (a lane of the daemon's store service, or a
    CLI). The repositories (panicgw.store.devices, .events, ...) add their queries to it."""

    def __init__(self, path: str | os.PathLike[str], *, check_same_thread: bool = True,
                 autocheckpoint: bool = True, create: bool = True,
                 readonly: bool = False) -> None:
        """``autocheckpoint=False``: this connection never runs WAL checkpoints itself (the
        daemon checkpoints from another thread so a commit never waits for one).

        ``create=False`` (every tool): the file must exist and carry the gateway's schema;
        only the daemon creates the DB, so a mistyped path can never become a second,
        unread registry. ``readonly=True`` also opens it read-only (no migration)."""
        self.path = Path(path)
        if create and not readonly:
            secure_create(self.path)
        elif not self.path.is_file():
            raise StoreError(f"no gateway DB at {self.path}: only the gateway creates it "
                             "(`panicgw run` when it first starts, or `sudo panicgw setup` on "
                             f"a fresh Pi); {USE_THE_GATEWAYS_DB}")
        try:
            if readonly:
                self.db = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                    isolation_level=None, check_same_thread=check_same_thread, timeout=10.0,
                )
            else:
                self.db = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=check_same_thread,
                    timeout=10.0,
                )
                if not create:  # before any pragma: never convert someone else's file
                    self._check_schema()
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.execute("PRAGMA foreign_keys=ON")
                if not autocheckpoint:
                    self.db.execute("PRAGMA wal_autocheckpoint=0")
            if readonly:
                self._check_schema()
            else:
                self.migrate()
        except sqlite3.DatabaseError as e:
            if create and not readonly:
                raise StoreError(f"cannot open gateway DB {self.path}: {e}") from None
            raise StoreError(f"cannot open gateway DB {self.path}: {e}; it is not a gateway "
                             f"DB: {USE_THE_GATEWAYS_DB}") from None
        self._in_tx = False

    def _check_schema(self) -> None:
        try:
            schema.check(self.db, self.path)
        except StoreError:
            self.db.close()
            raise

    @property
    def schema_version(self) -> int:
        return schema.version(self.db)

    def migrate(self) -> None:
        """Apply every migration newer than the DB, each in its own transaction."""
        schema.migrate(self.db, self.path)

    def close(self) -> None:
        self.db.close()

    def checkpoint(self) -> tuple[int, int, int]:
        """PASSIVE WAL checkpoint: copies committed pages into the DB without blocking
        writers. Returns (busy, wal pages, pages checkpointed)."""
        row = self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (durable on return); ROLLBACK on any exception.
        Nested calls join the outer transaction."""
        if self._in_tx:
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield self.db
        except BaseException:
            self._in_tx = False
            self.db.execute("ROLLBACK")
            raise
        self._in_tx = False
        self.db.execute("COMMIT")

    @contextmanager
    def savepoint(self, name: str) -> Iterator[None]:
        """Inside :meth:`transaction`: on an exception, undo just what this block wrote
        (ROLLBACK TO) and re-raise; the outer transaction goes on. ``name`` is a fixed
        identifier, never data."""
        if not name.isidentifier():
            raise ValueError(f"savepoint name must be an identifier: {name!r}")
        self.db.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.db.execute(f"ROLLBACK TO {name}")
            self.db.execute(f"RELEASE {name}")
            raise
        self.db.execute(f"RELEASE {name}")
