"""docs/firmware.md and the button rules in docs/protocol.md say what the firmware does:
on-air length and airtime, the DELIVERED schedule, the LED pattern."""

import re
from pathlib import Path

import pytest

from panicbutton import feedback, policy
from panicbutton.settings import AIR_LEN
from panicproto import airtime, frames

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_on_air_length_is_the_frame() -> None:
    assert AIR_LEN == frames.UPLINK_LEN == 19


def test_battery_airtimes_are_the_19_byte_packet() -> None:
    text = (DOCS / "firmware.md").read_text()
    rows = re.findall(r"^\* SF(\d+): t_air = ([\d.]+) s: Q = ([\d.]+) \+ ([\d.]+) \+ ([\d.]+) "
                      r"= \*\*([\d.]+) mAs\*\*", text, re.M)
    assert [int(r[0]) for r in rows] == [9, 10]
    for sf, t_air, boot, radio, rx, q in rows:
        t = airtime.time_on_air_ms(AIR_LEN, int(sf), 125000) / 1000
        assert float(t_air) == pytest.approx(t, abs=0.0005)
        assert float(radio) == pytest.approx(t * 65, abs=0.05)
        assert float(q) == pytest.approx(float(boot) + float(radio) + float(rx), abs=0.05)
    assert "19 bytes on air" in text and "4-byte RadioHead header);" not in text
    assert "23 bytes" not in text


def test_confirm_schedule_and_pattern_as_documented() -> None:
    fw = (DOCS / "firmware.md").read_text()
    proto = (DOCS / "protocol.md").read_text()
    asks = ", ".join(str(t) for t in policy.CONFIRM_AT_S[:-2]) + " and " + str(
        policy.CONFIRM_AT_S[-2])
    assert asks + " s" in fw.replace("\n  ", " ").replace("**", "")
    assert asks + " s" in proto.replace("\n  ", " ")
    assert f"At {policy.CONFIRM_AT_S[-1]} s it stops asking" in fw.replace("**", "")
    assert feedback.POLICE_NOTIFIED == (60, 700, 60, 700, 60)
    assert "three 60 ms flickers 0.7 s apart, once" in fw
