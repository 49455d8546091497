"""A private Mosquitto for tests: on a free port, restartable on the same port, required in
CI (shared by the MQTT publisher's and the cluster's tests)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


def need_mosquitto() -> str:
    if MOSQUITTO is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is required in CI (apt-get install mosquitto)")
        pytest.skip("mosquitto not installed")
    return MOSQUITTO


def _wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


class Broker:
    """A private mosquitto; ``conf`` text is written as given (ports already in it)."""

    def __init__(self, tmp: Path, port: int, conf: str | None = None) -> None:
        self.port = port
        self.conf = tmp / f"mosquitto-{port}.conf"
        self.conf.write_text(conf or f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                             "persistence false\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([need_mosquitto(), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert _wait(self._listening, 10), "mosquitto did not start"

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            if self.proc is not None and self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"mosquitto exited: {err}") from None
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None
