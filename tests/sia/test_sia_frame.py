"""The DC-09 frame: CRC-16/ARC, the 0LLL length, the header, and the check of a reply."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from panicgw.forward.sia.frame import FrameError, build, crc16, header, unwrap, wrap
from panicgw.forward.sia.message import Message, null_message

from .siakit import header_fields, parse, pysia_crc

NOW = 1_714_564_800.0  # 2024-05-01 12:00:00 UTC


def test_crc_is_crc16_arc() -> None:
    assert crc16(b"123456789") == 0xBB3D  # the catalogued check value of CRC-16/ARC
    assert crc16(b"") == 0


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300))
def test_crc_agrees_with_pysiaalarm(text: str) -> None:
    assert f"{crc16(text.encode()):04X}" == pysia_crc(text)


def test_wrap_layout() -> None:
    body = '"NULL"0001R1L0#1234[]_12:00:00,05-01-2024'
    raw = wrap(body)
    assert raw[:1] == b"\n" and raw[-1:] == b"\r"
    assert raw[1:5] == f"{crc16(body.encode()):04X}".encode()
    assert raw[5:9] == f"0{len(body):03X}".encode()  # "0LLL"
    assert raw[9:-1] == body.encode()
    assert unwrap(raw) == body


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "short"),
    (b"\n1234\r", "short"),
    (b'\nZZZZ0014"ACK"0001R1L1#1234[]\r', "format"),
    (b'\nC7370015"ACK"0001R1L2#1234[]\r', "length"),
    (b'\nC7380014"ACK"0001R1L2#1234[]\r', "crc"),
    ('\nC7370014"ACK"0001R1L2#1234[\u00e9\r'.encode(), "not_ascii"),
])
def test_unwrap_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as e:
        unwrap(raw)
    assert e.value.reason == reason


def test_unwrap_accepts_pysiaalarm_reply() -> None:
    assert unwrap(b'\nC7370014"ACK"0001R1L2#1234[]\r') == '"ACK"0001R1L2#1234[]'


def test_header() -> None:
    assert header("SIA-DCS", 7, 0x12, 3, "12ab", False) == '"SIA-DCS"0007R12L3#12AB['
    assert header("NULL", 9999, 0, 0, "1234", True) == '"*NULL"9999R0L0#1234['


@pytest.mark.parametrize("kw", [{"seq": 0}, {"seq": 10000}, {"receiver": 0x1000000},
                                {"line": -1}])
def test_build_refuses_out_of_range(kw: dict[str, int]) -> None:
    args = {"seq": 1, "receiver": 1, "line": 1} | kw
    with pytest.raises(ValueError):
        build(null_message("1234"), args["seq"], receiver=args["receiver"], line=args["line"],
              now=NOW)


def test_build_refuses_a_frame_longer_than_the_length_field() -> None:
    msg = Message("SIA-DCS", "1234", "#1234|Nri1/HA001", (("I", "x" * 5000),))
    with pytest.raises(FrameError):
        build(msg, 1, receiver=1, line=1, now=NOW)


def test_plain_null_frame_byte_for_byte() -> None:
    raw = build(null_message("1234"), 42, receiver=0x12, line=3, now=NOW)
    body = '"NULL"0042R12L3#1234[]_12:00:00,05-01-2024'
    assert raw == f"\n{pysia_crc(body)}0{len(body):03X}{body}\r".encode()
    assert header_fields(raw) == ("NULL", "0042", "R12", "L3", "1234")
    ev = parse(raw)
    assert ev.valid_message and ev.code == "RP"  # pysiaalarm reads a NULL as a test report


def test_encrypted_frame_is_flagged_and_hex() -> None:
    key = b"AAAAAAAAAAAAAAAA"
    raw = build(null_message("1234"), 42, receiver=1, line=1, now=NOW, key=key)
    assert raw.startswith(b"\n") and b'"*NULL"0042R1L1#1234[' in raw
    sealed = raw.split(b"[", 1)[1][:-1]
    assert len(sealed) % 32 == 0 and sealed == sealed.upper()
    ev = parse(raw, key.decode())
    assert ev.valid_message and ev.timestamp is not None
    assert ev.timestamp.timestamp() == NOW
