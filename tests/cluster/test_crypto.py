"""Group secret files and derived keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from panicgw.cluster.crypto import CryptoError, GroupKeys, create_secret, load_secret

from .conftest import SECRET


def test_secret_file_is_private_and_refused_when_readable(tmp_path: Path) -> None:
    path = tmp_path / "cluster.secret"
    create_secret(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(load_secret(path)) == 32
    with pytest.raises(CryptoError, match="exists"):
        create_secret(path)  # never silently replaced: it would cut the gateway off
    os.chmod(path, 0o640)
    with pytest.raises(CryptoError, match="chmod 600"):
        load_secret(path)


def test_secret_file_must_hold_enough_hex(tmp_path: Path) -> None:
    path = tmp_path / "s"
    for text in ("zz" * 32, "ab" * 8):
        path.write_text(text)
        os.chmod(path, 0o600)
        with pytest.raises(CryptoError):
            load_secret(path)
    with pytest.raises(CryptoError, match="cannot read"):
        load_secret(tmp_path / "missing")


def test_derived_keys_are_separate_per_purpose_and_group() -> None:
    a, b = GroupKeys(SECRET, "bandung"), GroupKeys(SECRET, "jakarta")
    assert a.sign(b"x") != b.sign(b"x")  # same secret, other group: other keys
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == GroupKeys(SECRET, "bandung").fingerprint
    assert a.verify(b"x", a.sign(b"x")) and not a.verify(b"y", a.sign(b"x"))
    sealed = a.seal(b"device key", b"aad")
    assert b"device key" not in sealed
    assert a.unseal(sealed, b"aad") == b"device key"
    with pytest.raises(CryptoError):
        a.unseal(sealed, b"other aad")
    with pytest.raises(CryptoError):
        b.unseal(sealed, b"aad")
    assert a.seal(b"k", b"") != a.seal(b"k", b"")  # fresh nonce each time


def test_keys_never_show_in_repr() -> None:
    k = GroupKeys(SECRET, "bandung")
    assert SECRET.hex() not in repr(k) and "fingerprint" in repr(k)
    with pytest.raises(CryptoError):
        GroupKeys(b"short", "bandung")
