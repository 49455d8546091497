"""A real `panicgw run` process for tests: config written as TOML, ports read back from its
runtime.json, its status API read over HTTP, its log (stderr) kept in a file, SIGTERM on exit.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from gwkit import make_record

from panicgw.store import Store

PANICGW = str(Path(sys.executable).parent / "panicgw")


def _toml(doc: dict[str, Any]) -> str:
    """Tables, and arrays of tables (a list of dicts: ``[[sia]]``)."""
    lines = []
    for sec, body in doc.items():
        for kv in body if isinstance(body, list) else [body]:
            lines.append(f"[[{sec}]]" if isinstance(body, list) else f"[{sec}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in kv.items()]
    return "\n".join(lines) + "\n"


class GatewayProcess:
    """``with GatewayProcess(tmp, serial={...}) as gw: gw.status(), gw.http_port``."""

    def __init__(self, tmp: Path, devices: list[Any] | None = None,
                 **sections: dict[str, Any] | list[dict[str, Any]]) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        doc: dict[str, Any] = {
            "gateway": {"id": "gw-proc", "data_dir": str(self.data)},
            "http": {"host": "127.0.0.1", "port": 0, "rate_per_s": 10000.0,
                     "rate_burst": 10000},
            "serial": {"enabled": False},
            "status": {"port": 0},
        }
        for name, body in sections.items():
            if isinstance(body, list):
                doc[name] = body
            else:
                doc.setdefault(name, {}).update(body)
        self.config = tmp / "gateway.toml"
        self.config.write_text(_toml(doc))
        self.log_path = tmp / "gateway.log"
        s = Store(self.data / "gateway.db")
        for rec in devices if devices is not None else [make_record()]:
            s.upsert_device(rec)
        s.close()
        self.proc: subprocess.Popen[bytes] | None = None
        self.http_port = 0
        self.status_port = 0

    def __enter__(self) -> GatewayProcess:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([PANICGW, "run", "--config", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("panicgw run exited:\n" + self.log_path.read_text()[-3000:])
            try:
                info = json.loads((self.data / "runtime.json").read_text())
                if info.get("pid") == self.proc.pid and info.get("status_port"):
                    self.http_port = int(info.get("http_port") or 0)
                    self.status_port = int(info["status_port"])
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError("panicgw run did not start within 30 s")

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/v1/status",
                                    timeout=5) as r:
            return json.loads(r.read())

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
