"""Console tests: where this run's screenshots go (see consolekit.shot)."""

from __future__ import annotations

from pathlib import Path

import consolekit
import pytest


@pytest.fixture(scope="session", autouse=True)
def screenshots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    consolekit.shots_dir = tmp_path_factory.mktemp("screenshots")
    return consolekit.shots_dir
