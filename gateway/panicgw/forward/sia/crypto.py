"""DC-09 encryption: AES-128/192/256 in CBC mode with an all-zero IV, as the standard fixes.

A zero IV would repeat ciphertexts for repeated plaintexts; the standard counters that with
a pad of pseudo-random characters *in front of* the data: ``<pad>|<data>``, the pad sized so
the whole is a multiple of the 16-byte block (1..16 pad characters here, never ``|``, ``[``
or ``]``, so a receiver finds the data after the first ``|``). The timestamp inside the
encrypted part is what makes a replayed message or ACK recognisable.

Keys are given the standard's way, as 32/48/64 hex digits, or as 16/24/32 characters used
byte for byte (``key_format = "text"``): the form Home Assistant's SIA integration
(pysiaalarm) and several panels take.
"""

from __future__ import annotations

import binascii
import random
import secrets

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
KEY_SIZES = (16, 24, 32)
KEY_FORMATS = ("hex", "text")
_ZERO_IV = bytes(BLOCK)
PAD_CHARS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "[]|")


class SiaKeyError(ValueError):
    """The key text is not a DC-09 key; the message says what a valid one looks like."""


def parse_key(text: str, key_format: str = "hex") -> bytes:
    """A configured key -> the AES key bytes (16, 24 or 32)."""
    if key_format not in KEY_FORMATS:
        raise SiaKeyError(f"key_format must be one of {', '.join(KEY_FORMATS)}")
    if not isinstance(text, str):
        raise SiaKeyError("the key must be a string")
    if key_format == "text":
        raw = text.encode("ascii", errors="replace")
        if len(raw) not in KEY_SIZES or not text.isascii() or not text.isprintable():
            raise SiaKeyError("a text key is 16, 24 or 32 printable ASCII characters "
                            f"(AES-128/192/256), got {len(text)} characters")
        return raw
    digits = text.strip()
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise SiaKeyError("a hex key is 32, 48 or 64 hex digits (AES-128/192/256); for a key "
                        "written as 16/24/32 characters set key_format = \"text\"") from None
    if len(raw) not in KEY_SIZES:
        raise SiaKeyError(f"a hex key is 32, 48 or 64 hex digits (AES-128/192/256), got "
                        f"{len(digits)}; for a key written as 16/24/32 characters set "
                        "key_format = \"text\"")
    return raw


def check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) not in KEY_SIZES:
        raise SiaKeyError("an AES key is 16, 24 or 32 bytes")
    return key


def pad(data: str, rng: random.Random | None = None) -> str:
    """``<pad>|<data>`` with a length that is a multiple of 16 (1..16 pad characters).

    ``rng`` only for reproducible examples (docs); by default the pad comes from ``secrets``.
    """
    count = (-(len(data) + 1)) % BLOCK or BLOCK
    choice = rng.choice if rng is not None else secrets.choice
    return "".join(choice(PAD_CHARS) for _ in range(count)) + "|" + data


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(check_key(key)), modes.CBC(_ZERO_IV))


def encrypt(key: bytes, plaintext: str) -> str:
    """Whole blocks of ASCII -> upper-case hex, as it goes on the wire."""
    raw = plaintext.encode("ascii")
    if len(raw) % BLOCK:
        raise ValueError("DC-09 plaintext must be padded to a multiple of 16 bytes")
    enc = _cipher(key).encryptor()
    return (enc.update(raw) + enc.finalize()).hex().upper()


def seal(key: bytes, data: str, rng: random.Random | None = None) -> str:
    """Pad and encrypt the data part of a message (everything after its ``[``)."""
    return encrypt(key, pad(data, rng))


def decrypt(key: bytes, hex_text: str) -> bytes | None:
    """Hex from the wire -> plaintext bytes; None when it is not whole blocks of hex."""
    if not hex_text or len(hex_text) % (2 * BLOCK):
        return None
    try:
        raw = binascii.unhexlify(hex_text)
    except (binascii.Error, ValueError):
        return None
    dec = _cipher(key).decryptor()
    return dec.update(raw) + dec.finalize()


def unpad(plaintext: bytes) -> str | None:
    """The data after the pad, or None when the plaintext is not printable ASCII (a wrong
    key or a forged block decrypts to noise).

    The pad is everything before the first ``|``; a receiver that pads without ``|`` (as
    pysiaalarm does, with zeros) is read up to the first ``[`` or ``]`` instead.
    """
    try:
        text = plaintext.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not text.isprintable():
        return None
    bar = text.find("|")
    brackets = [i for i in (text.find("["), text.find("]")) if i >= 0]
    first_bracket = min(brackets) if brackets else len(text)
    if 0 <= bar < first_bracket:
        return text[bar + 1:]
    return text[first_bracket:]
