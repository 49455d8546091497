"""panicproto.mac and panicproto.crc: the stdlib's C code on CPython, the portable code on
boards, the same results from both (issue 12.8).

On CPython the API is backed by ``hmac.digest``/``hmac.compare_digest`` and
``binascii.crc_hqx``; the portable functions (``mac._hmac``, ``mac._equal``,
``crc._crc16``) are what CircuitPython and MicroPython run, and here they are checked
against the stdlib on random input. Under the MicroPython VM the module must pick the
portable code and never import ``hmac``.
"""

import binascii
import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from panicproto import crc, mac

ROOT = Path(__file__).resolve().parents[2]


def test_cpython_uses_the_stdlib() -> None:
    assert mac.hmac_sha256 is not mac._hmac and mac.equal is hmac.compare_digest
    assert crc.crc16 is not crc._crc16
    assert crc.crc16(b"123456789") == crc._crc16(b"123456789") == 0x29B1


@given(key=st.binary(max_size=200), data=st.binary(max_size=300))
def test_hmac_both_ways_match_the_stdlib(key: bytes, data: bytes) -> None:
    want = hmac.new(key, data, hashlib.sha256).digest()
    assert mac.hmac_sha256(key, data) == mac._hmac(key, data) == want


@given(a=st.binary(max_size=40), b=st.binary(max_size=40))
def test_equal_both_ways(a: bytes, b: bytes) -> None:
    assert mac.equal(a, b) == mac._equal(a, b) == (a == b)
    assert mac.equal(a, a) and mac._equal(bytearray(a), a)


@given(data=st.binary(max_size=300), init=st.integers(0, 0xFFFF))
def test_crc_both_ways(data: bytes, init: int) -> None:
    assert crc.crc16(data, init) == crc._crc16(data, init) == binascii.crc_hqx(data, init)
    assert crc.crc16(bytearray(data)) == crc._crc16(data)


def _micropython() -> str:
    p = Path(sys.executable).parent / "micropython"
    if p.exists():
        return str(p)
    if os.environ.get("CI") == "true":
        pytest.fail("micropython is not installed: the gate is required in CI")
    pytest.skip("micropython is not installed")


def test_boards_run_the_portable_code_and_never_import_hmac() -> None:
    code = ("import sys\nfrom panicproto import crc, frames, mac\n"
            "print(mac.hmac_sha256 is mac._hmac, mac.equal is mac._equal,"
            " crc.crc16 is crc._crc16, 'hmac' in sys.modules)\n"
            "print(crc.crc16(b'123456789'), mac.hmac_sha256(b'k', b'd').hex())")
    env = {"MICROPYPATH": f"{ROOT}/firmware/lib", "PATH": os.environ["PATH"]}
    out = subprocess.run([_micropython(), "-X", "heapsize=64k", "-c", code], env=env,
                         capture_output=True, text=True, timeout=60)
    lines = out.stdout.split("\n")
    assert lines[0] == "True True True False", out.stdout + out.stderr
    assert lines[1] == f"{0x29B1} {hmac.new(b'k', b'd', hashlib.sha256).hexdigest()}"
