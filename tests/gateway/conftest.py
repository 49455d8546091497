"""Fixtures for the gateway tests (helpers live in gwkit.py)."""

from __future__ import annotations

import pytest
from gwkit import make_record

from panicgw.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gw.db")
    s.upsert_device(make_record())
    yield s
    s.close()
