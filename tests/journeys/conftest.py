"""Fixtures of the journeys: the precinct's PKI (once per run) and the world of a day."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from journeykit import RSSI, SNR, Air, Gateway, Laptop, Pki, make_pki

from panicsim import SimClock


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("precinct-pki"))


@pytest.fixture
def air() -> Air:
    return Air(SimClock(1.0), seed=10, rssi=RSSI, snr=SNR)


@pytest.fixture
def laptop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Laptop:
    return Laptop(tmp_path, monkeypatch)


@pytest.fixture
def gateway(tmp_path: Path, air: Air, pki: Pki) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, air, pki)
    try:
        yield gw
    finally:
        gw.stop()
