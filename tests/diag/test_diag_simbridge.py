"""diag against panicsim's virtual bridge: the real bridge firmware on a pty."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from diagkit import Gateway, by_id

from panicsim import Air, SimClock, start_virtual_bridge


@pytest.fixture
def sim_bridge(gw: Gateway, request: pytest.FixtureRequest) -> Iterator[Any]:
    (gw.root / "sim").mkdir(exist_ok=True)
    settings = {"PB_FREQUENCY_MHZ": "921.4", "PB_SF": 9, **getattr(request, "param", {})}
    bridge = start_virtual_bridge(Air(SimClock(1.0), seed=5), settings=settings,
                                  link_dir=str(gw.root / "sim"))
    gw.bridge.unplug()  # use the simulated board instead of the test's pty peer
    gw.overrides["serial"] = {"port": bridge.port_path}
    try:
        yield bridge
    finally:
        bridge.stop()


def test_sim_bridge_answers_and_matches(gw: Gateway, sim_bridge: Any) -> None:
    code, doc = gw.diag("--only", "bridge")
    r = by_id(doc)
    assert r["bridge.ping"]["status"] == "PASS"
    assert r["bridge.radio"]["status"] == "PASS", r["bridge.radio"]
    assert r["bridge.present"]["status"] == "PASS"
    assert code in (0, 1)  # the noise floor may not be sampled yet (SKIP)


@pytest.mark.parametrize("sim_bridge", [{"PB_SF": 10}], indirect=True)
def test_sim_bridge_wrong_sf(gw: Gateway, sim_bridge: Any) -> None:
    code, doc = gw.diag("--only", "bridge")
    r = by_id(doc)["bridge.radio"]
    assert r["status"] == "FAIL" and "SF 10 (config 9)" in r["finding"]
    assert code == 2
