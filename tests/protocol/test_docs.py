"""docs/protocol.md's airtime table must agree with the function that devices use."""

import re
from pathlib import Path

import pytest

from panicproto import airtime

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_airtime_table_matches_function() -> None:
    rows = re.findall(r"^\| (\d+) \| ([\d.]+) ms \| ([\d.]+) ms \| (allowed|not allowed)",
                      DOC.read_text(), re.M)
    assert [int(r[0]) for r in rows] == list(range(7, 13))
    region = airtime.region("AS923")
    for sf, up, down, allowed in rows:
        sf = int(sf)
        assert float(up) == pytest.approx(airtime.time_on_air_ms(19, sf), abs=0.05)
        assert float(down) == pytest.approx(airtime.time_on_air_ms(18, sf), abs=0.05)
        assert (allowed == "allowed") == region.allows(19, sf)
