"""The demo's dispatch: the police console (`panicconsole serve`) in its own process, over
HTTPS, and what it recorded of every request (its receipts), read from its database.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from panicconsole import db as console_db
from panicconsole.alarms import intake


class SetupError(RuntimeError):
    """A part of the demo could not start; the message says which and where its log is."""


@dataclass
class Receipt:
    """One request as the console recorded it (its dispatch log)."""

    at: float
    status: int
    verdict: str
    body: Any
    errors: list[str]


class ConsoleDispatch:
    """`panicconsole serve` as the demo's dispatch endpoint: HTTPS with a certificate made for
    this run (the gateway trusts it with [dispatch] ca_file), an account to sign in with.
    Driven only through its command line and database: the gateway never imports it."""

    def __init__(self, workdir: Path, token: str, secret: str) -> None:
        self.dir = workdir / "console"
        self.token, self.secret = token, secret
        self.password = secrets.token_urlsafe(9)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.cert = self.dir / "tls" / "console.crt"
        self.db = self.dir / "data" / "console.db"
        self.log = self.dir / "console.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    @property
    def events_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/v1/events"

    def _cli(self, *args: str) -> None:
        r = subprocess.run([sys.executable, "-m", "panicconsole", *args], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise SetupError(f"panicconsole {args[0]} failed: {r.stderr.strip()}")

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._cli("cert", "selfsigned", "--out-dir", str(self.dir / "tls"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cfg = self.dir / "console.toml"
        cfg.write_text(f"""# written by `panicdemo`
[console]
name = "Demo dispatch console"
data_dir = "{self.dir / 'data'}"
language = "en"
[server]
host = "127.0.0.1"
port = {self.port}
tls_cert = "{self.cert}"
tls_key = "{self.dir / 'tls' / 'console.key'}"
[dispatch]
token = "{self.token}"
secret = "{self.secret}"
""")
        os.chmod(cfg, 0o600)
        pw = self.dir / "password"
        pw.write_text(self.password + "\n")
        os.chmod(pw, 0o600)
        self._cli("user", "add", "demo", "--role", "admin", "--password-file", str(pw),
                  "--config", str(cfg))
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "panicconsole", "serve",
                                          "--config", str(cfg)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (self.dir / "data" / "runtime.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SetupError(f"the dispatch console did not start; see {self.log}")
            time.sleep(0.05)

    def received(self) -> list[Receipt]:
        """Every request the console answered, oldest first (read-only, beside the writer)."""
        try:
            db = console_db.connect(self.db, readonly=True, timeout=5)
        except console_db.StoreError:
            return []
        try:
            rows = intake.receipts(db)
        except sqlite3.Error:
            return []
        finally:
            db.close()
        out = []
        for at, status, verdict, body, errors in rows:
            try:
                doc = json.loads(body) if body else None
            except ValueError:
                doc = None
            out.append(Receipt(at, status, verdict, doc, json.loads(errors or "[]")))
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
