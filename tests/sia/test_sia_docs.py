"""docs/sia.md cannot drift from the code: its example frames are rebuilt here byte for byte
(pad from a seeded generator), its encrypted example is opened with pycryptodome and the key
the doc gives, its replies are judged as the doc says, its event table matches the code, and
its [[sia]] example passes the table checker."""

from __future__ import annotations

import random
import re
import tomllib
from pathlib import Path

from Crypto.Cipher import AES

from panicgw.forward.payload import EVENTS, PANIC_AUDIBLE
from panicgw.forward.sia.crypto import seal
from panicgw.forward.sia.frame import build, wrap
from panicgw.forward.sia.message import ADM_CID, SIA_DCS_CODES, from_payload, null_message
from panicgw.forward.sia.reply import Ack, Duh, Expected, Nak, judge
from panicgw.forward.sia.settings import from_table

from .siakit import payload

DOC = Path(__file__).resolve().parents[2] / "docs" / "sia.md"
NOW = 1_714_564_800.0  # 2024-05-01 12:00:00 UTC
KEY_HEX = "000102030405060708090A0B0C0D0E0F"
KEY = bytes.fromhex(KEY_HEX)
ACCOUNT, ZONE, SEQ, R, L = "1234", 5, 17, 1, 1


def show(raw: bytes) -> str:
    """A frame as the doc prints it: <LF> and <CR> spelled out."""
    return raw.decode("ascii").replace("\n", "<LF>").replace("\r", "<CR>")


def examples() -> dict[str, str]:
    panic = payload("panic")
    sia = from_payload(panic, account=ACCOUNT, zone=ZONE)
    adm = from_payload(panic, account=ACCOUNT, zone=ZONE, fmt=ADM_CID, xdata=["X"])
    args = {"receiver": R, "line": L, "now": NOW}
    sealed = build(sia, SEQ, key=KEY, rng=random.Random(13), **args)
    ack_sealed = wrap(f'"*ACK"{SEQ:04d}R{R}L{L}#{ACCOUNT}[' +
                      seal(KEY, "]_12:00:01,05-01-2024", random.Random(14)))
    return {
        "sia_plain": show(build(sia, SEQ, **args)),
        "adm_plain": show(build(adm, SEQ + 1, **args)),
        "null_plain": show(build(null_message(ACCOUNT), SEQ + 2, **args)),
        "sia_sealed": show(sealed),
        "ack_plain": show(wrap(f'"ACK"{SEQ:04d}R{R}L{L}#{ACCOUNT}[]')),
        "ack_sealed": show(ack_sealed),
        "nak": show(wrap('"NAK"0000R0L0A0[]_12:00:30,05-01-2024')),
        "duh": show(wrap(f'"DUH"{SEQ:04d}R{R}L{L}#{ACCOUNT}[]')),
    }


def doc() -> str:
    return DOC.read_text()


def test_example_frames_are_the_codes_output() -> None:
    text = doc()
    missing = {name: frame for name, frame in examples().items() if frame not in text}
    assert not missing, "docs/sia.md is out of date; the frames are now:\n" + "\n".join(
        f"{k}: {v}" for k, v in missing.items())


def test_the_encrypted_example_opens_with_the_docs_key() -> None:
    text = doc()
    assert KEY_HEX in text
    frame = examples()["sia_sealed"]
    hex_part = frame.split("[", 1)[1].removesuffix("<CR>")
    plain = AES.new(KEY, AES.MODE_CBC, bytes(16)).decrypt(bytes.fromhex(hex_part)).decode()
    assert plain in text  # the doc shows the plaintext, pad and all
    assert plain.split("|", 1)[1] == (
        "#1234|Nri1/HA005][X107.609800][Y-6.914700][I1234ABCD till]_12:00:00,05-01-2024")


def _raw(shown: str) -> bytes:
    return shown.replace("<LF>", "\n").replace("<CR>", "\r").encode()


def test_the_docs_replies_read_as_it_says() -> None:
    ex = examples()
    plain = Expected(SEQ, R, L, ACCOUNT)
    sealed = Expected(SEQ, R, L, ACCOUNT, KEY, NOW)
    assert isinstance(judge(_raw(ex["ack_plain"]), plain), Ack)
    assert isinstance(judge(_raw(ex["ack_sealed"]), sealed), Ack)
    nak = judge(_raw(ex["nak"]), plain)
    assert isinstance(nak, Nak) and nak.receiver_time == NOW + 30
    assert isinstance(judge(_raw(ex["duh"]), plain), Duh)


def test_event_table_matches_the_code() -> None:
    text = doc()
    for event, spec in EVENTS.items():
        row = re.search(rf"^\| `{event}` \|([^\n]*)$", text, re.M)
        assert row, f"docs/sia.md has no row for {event}"
        cells = [c.strip() for c in row.group(1).split("|")]
        assert f"`{SIA_DCS_CODES[(spec.code, spec.qualifier)]}`" in cells[0], event
        assert f"`{spec.qualifier}{spec.code:03d}`" in cells[1], event
    audible = SIA_DCS_CODES[(PANIC_AUDIBLE, 1)]
    assert f"`{audible}`" in text and f"`1{PANIC_AUDIBLE}`" in text


def test_config_example_is_valid() -> None:
    block = re.search(r"```toml\n(.*?)```", doc(), re.S)
    assert block
    tables = tomllib.loads(block.group(1))["sia"]
    assert len(tables) >= 1
    for t in tables:
        from_table(t)
