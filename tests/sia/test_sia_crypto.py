"""DC-09 encryption: AES-CBC, zero IV, the pad; checked against pycryptodome (pysiaalarm's
AES) as an independent implementation."""

from __future__ import annotations

import random

import pytest
from Crypto.Cipher import AES
from hypothesis import given
from hypothesis import strategies as st

from panicgw.forward.sia.crypto import (
    PAD_CHARS,
    SiaKeyError,
    decrypt,
    encrypt,
    pad,
    parse_key,
    seal,
    unpad,
)

printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)


@given(printable)
def test_pad_rules(data: str) -> None:
    padded = pad(data)
    assert len(padded) % 16 == 0
    count = padded.index("|")
    assert 1 <= count <= 16
    assert all(c in PAD_CHARS and c not in "[]|" for c in padded[:count])
    assert padded[count + 1:] == data


def test_pad_is_random_and_rng_reproducible() -> None:
    assert len({pad("x") for _ in range(20)}) > 1
    assert pad("x", random.Random(5)) == pad("x", random.Random(5))


@pytest.mark.parametrize("size", [16, 24, 32])
@given(data=printable)
def test_seal_matches_pycryptodome(size: int, data: str) -> None:
    key = bytes(range(size))
    sealed = seal(key, data)
    plain = AES.new(key, AES.MODE_CBC, bytes(16)).decrypt(bytes.fromhex(sealed)).decode()
    assert plain.split("|", 1)[1] == data
    assert decrypt(key, sealed) == plain.encode()
    assert unpad(plain.encode()) == data


def test_encrypt_needs_whole_blocks() -> None:
    with pytest.raises(ValueError):
        encrypt(b"A" * 16, "short")


@pytest.mark.parametrize("text", ["", "ABC", "0" * 31, "G" * 32])
def test_decrypt_refuses_what_is_not_whole_hex_blocks(text: str) -> None:
    assert decrypt(b"A" * 16, text) is None


def test_unpad_reads_pysiaalarms_zero_pad_and_refuses_noise() -> None:
    assert unpad(b"00000000000]_12:00:00,05-01-2024") == "]_12:00:00,05-01-2024"
    assert unpad(b"ab|#1234|]_12:00:00,05-01-2024") == "#1234|]_12:00:00,05-01-2024"
    assert unpad(bytes(range(256))[:32]) is None
    assert unpad("é".encode()) is None


def test_parse_key() -> None:
    assert parse_key("00" * 16) == bytes(16)
    assert parse_key("ab" * 24) == b"\xab" * 24
    assert parse_key(" " + "cd" * 32 + " ") == b"\xcd" * 32
    assert parse_key("AAAAAAAAAAAAAAAA", "text") == b"A" * 16
    for bad, fmt in (("00" * 15, "hex"), ("zz" * 16, "hex"), ("A" * 17, "text"),
                     ("é" * 16, "text"), ("00" * 16, "base64")):
        with pytest.raises(SiaKeyError):
            parse_key(bad, fmt)
    with pytest.raises(SiaKeyError, match='key_format = "text"'):
        parse_key("AAAAAAAAAAAAAAAA")  # a 16-character key given as hex: say what to do
