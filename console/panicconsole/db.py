"""SQLite: the console's only store. WAL with ``synchronous=FULL``: a commit is on disk when
it returns, so an event is answered 2xx only once it survives a power cut.

Writes go through one writer thread (:class:`Writer`) that runs the jobs waiting at the
same moment in one transaction, each in its own savepoint (one failing job never takes the
others with it), and commits once: many gateways posting at once cost one fsync, not one
each. After every commit the writer hands the new rows of ``changes`` to the live feed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger("panicconsole.db")

BATCH_MAX = 200  # jobs per transaction at most


class StoreError(RuntimeError):
    """The database cannot be opened or migrated; the message says what to do."""


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every migration shipped in the package, in order."""
    out = []
    for f in resources.files("panicconsole").joinpath("migrations").iterdir():
        name = f.name
        if name.endswith(".sql") and name[:3].isdigit():
            out.append((int(name[:3]), f.read_text(encoding="utf-8")))
    return sorted(out)


def connect(path: Path | str, *, create: bool = True, readonly: bool = False,
            timeout: float = 10.0) -> sqlite3.Connection:
    """Open the console DB (WAL, synchronous=FULL, foreign keys), migrating it when needed.

    ``create=False`` refuses a missing file (tools must not make an empty DB next to the real
    one); ``readonly`` opens it for reading only.
    """
    p = Path(path)
    if not p.exists():
        if not create or readonly:
            raise StoreError(f"{p}: no console database here (wrong --config or data_dir?)")
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)  # sessions and hashes: owner only
        os.close(fd)
    uri = f"file:{p}?mode={'ro' if readonly else 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as e:
        raise StoreError(f"{p}: cannot open ({e})") from None
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{p}: SQLite refused WAL mode ({mode}); is it on a network "
                                 "file system? Put data_dir on a local disk")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            _migrate(conn, p)
        else:
            have = conn.execute("PRAGMA user_version").fetchone()[0]
            if have == 0:
                raise StoreError(f"{p}: not a console database (no schema)")
    except sqlite3.Error as e:
        conn.close()
        raise StoreError(f"{p}: {e}") from None
    except StoreError:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection, p: Path) -> None:
    have = conn.execute("PRAGMA user_version").fetchone()[0]
    steps = migrations()
    newest = steps[-1][0] if steps else 0
    if have > newest:
        raise StoreError(f"{p}: database schema {have} is newer than this panicconsole "
                         f"understands ({newest}); upgrade panicconsole")
    for version, sql in steps:
        if version <= have:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] >= version:
                conn.execute("ROLLBACK")  # another process migrated meanwhile
                continue
            for stmt in _statements(sql):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("database migrated to schema %d", version)


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (triggers keep their BEGIN ... END together)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--") and not buf.strip():
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


Job = Callable[[sqlite3.Connection], Any]


@dataclass
class _Pending:
    fn: Job
    loop: asyncio.AbstractEventLoop | None
    future: Any  # asyncio.Future or concurrent.futures.Future


class Writer:
    """The single writer thread. ``await writer.run(fn)`` runs ``fn(conn)`` inside a
    transaction and returns its result once the transaction is committed (durable)."""

    def __init__(self, path: Path | str,
                 on_commit: Callable[[list[sqlite3.Row]], None] | None = None) -> None:
        self.conn = connect(path)
        self._q: queue.Queue[_Pending | None] = queue.Queue()
        self._on_commit = on_commit
        self._last_change = self.conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
        self._thread = threading.Thread(target=self._loop, name="db-writer", daemon=True)
        self.commits = 0
        self.jobs = 0
        self._thread.start()

    async def run(self, fn: Job) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._q.put(_Pending(fn, loop, fut))
        return await fut

    def run_sync(self, fn: Job, timeout: float = 30.0) -> Any:
        """From a non-event-loop thread (tools, tests)."""
        import concurrent.futures
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._q.put(_Pending(fn, None, fut))
        return fut.result(timeout)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(30)
        self.conn.close()

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < BATCH_MAX:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[_Pending]) -> None:
        results: list[tuple[bool, Any]] = []
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, job in enumerate(batch):
                sp = f"j{i}"
                conn.execute(f"SAVEPOINT {sp}")
                try:
                    res = job.fn(conn)
                except Exception as e:  # noqa: BLE001 (handed to the job's caller)
                    conn.execute(f"ROLLBACK TO {sp}")
                    conn.execute(f"RELEASE {sp}")
                    results.append((False, e))
                else:
                    conn.execute(f"RELEASE {sp}")
                    results.append((True, res))
            conn.execute("COMMIT")
        except sqlite3.Error as e:  # the commit itself failed (disk full, I/O error)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            log.error("database commit failed: %s", e)
            results = [(False, e)] * len(batch)
        self.commits += 1
        self.jobs += len(batch)
        new: list[sqlite3.Row] = []
        if any(ok for ok, _ in results):
            try:
                new = conn.execute("SELECT seq, at, kind, data FROM changes WHERE seq > ? "
                                   "ORDER BY seq", (self._last_change,)).fetchall()
            except sqlite3.Error as e:
                log.error("cannot read the change feed: %s", e)
            if new:
                self._last_change = new[-1]["seq"]
        if new and self._on_commit is not None:
            self._on_commit(new)
        for job, (ok, val) in zip(batch, results, strict=True):
            _settle(job, ok, val)


def _settle(job: _Pending, ok: bool, val: Any) -> None:
    fut = job.future
    if job.loop is None:
        if ok:
            fut.set_result(val)
        else:
            fut.set_exception(val)
        return

    def done() -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(val)
        else:
            fut.set_exception(val)
    try:
        job.loop.call_soon_threadsafe(done)
    except RuntimeError:  # the loop is closed (shutting down)
        pass
