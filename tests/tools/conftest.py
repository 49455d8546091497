"""Fixtures for the installer tools: a MicroPython board on a pty."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mpboard import MpBoard


@pytest.fixture
def mpboard(tmp_path: Path) -> Iterator[MpBoard]:
    b = MpBoard(tmp_path).start()
    try:
        yield b
    finally:
        b.stop()
