"""The group secret and the keys derived from it: what makes a broker a carrier, not a party.

The gateways of one city share one random group secret (32 bytes, written by
:func:`create_secret` to a 0600 file that ``[cluster] secret_file`` names; copy it to each
gateway like an SSH key). The broker never gets it, so:

- every cluster message carries an HMAC-SHA256 tag over the topic and the message
  (:meth:`GroupKeys.sign`): a broker client without the secret, the broker's operator
  included, cannot inject or alter anything, nor move a message to another topic;
- registry entries (device keys and the sites, which are people's addresses) are encrypted
  with AES-256-GCM (:meth:`GroupKeys.seal`): a broker operator cannot read a device key, so
  cannot forge alarms.

Separate keys for the two jobs come out of HKDF-SHA256 (RFC 5869) with the group name in
``info``: one key is never used for two algorithms, and two groups that were given the same
secret by mistake still cannot read or inject each other's messages. ``fingerprint`` lets
two gateways (and ``panicgw diag``) compare that they hold the same secret without showing it.

Why one shared secret and not a key pair per gateway: any gateway of the group holds every
device key anyway (it must verify every button), so a compromised gateway can already forge
alarms; per-gateway signatures would add key distribution and buy nothing against that.
Which gateway may publish where is the broker's ACL job (docs/deployment.md).

Keys are never logged: the classes here print as their fingerprint only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from panicgw.registry import write_private

SECRET_LEN = 32
SALT = b"panicgw-cluster/1"
NONCE_LEN = 12
TAG_LEN = 32  # full HMAC-SHA256: messages are small, the bytes are cheap


class CryptoError(ValueError):
    """A secret file that must not be used, or a sealed payload that does not open."""


def create_secret(path: str | os.PathLike[str]) -> None:
    """Write a new random group secret (64 hex digits) to ``path`` with mode 0600.
    Refuses to replace an existing file: every gateway of the group would be cut off."""
    if Path(path).exists():
        raise CryptoError(f"{path} exists; a new group secret would cut this gateway off "
                          "from the others (copy the group's file instead)")
    write_private(path, (os.urandom(SECRET_LEN).hex() + "\n").encode())


def load_secret(path: str | os.PathLike[str]) -> bytes:
    """The secret from ``path``: refused unless only its owner may read it (like ssh does
    with private keys), and unless it holds at least 32 bytes as hex."""
    p = Path(path)
    try:
        st = p.stat()
        text = p.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise CryptoError(f"cannot read the group secret {path}: {e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CryptoError(f"{path} is not a regular file")
    if st.st_mode & 0o077:
        raise CryptoError(f"{path} is readable by other users (mode {st.st_mode & 0o777:o}); "
                          f"run: chmod 600 {path}")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise CryptoError(f"{path} must hold the secret as hex digits") from None
    if len(secret) < SECRET_LEN:
        raise CryptoError(f"{path} holds {len(secret)} bytes; at least {SECRET_LEN} needed")
    return secret


def _derive(secret: bytes, purpose: bytes, group: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT,
                info=purpose + b"\0" + group.encode()).derive(secret)


class GroupKeys:
    """The derived keys of one group. Build with :meth:`from_secret` or :meth:`from_file`."""

    __slots__ = ("group", "fingerprint", "_mac_key", "_aead")

    def __init__(self, secret: bytes, group: str) -> None:
        if len(secret) < SECRET_LEN:
            raise CryptoError(f"the group secret must be at least {SECRET_LEN} bytes")
        if not group:
            raise CryptoError("the group name must not be empty")
        self.group = group
        self._mac_key = _derive(secret, b"message authentication", group)
        self._aead = AESGCM(_derive(secret, b"registry encryption", group))
        self.fingerprint = _derive(secret, b"fingerprint", group)[:6].hex()

    @classmethod
    def from_secret(cls, secret: bytes, group: str) -> GroupKeys:
        return cls(secret, group)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], group: str) -> GroupKeys:
        return cls(load_secret(path), group)

    def __repr__(self) -> str:
        return f"GroupKeys(group={self.group!r}, fingerprint={self.fingerprint})"

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self._mac_key, data, hashlib.sha256).digest()

    def verify(self, data: bytes, tag: bytes) -> bool:
        return hmac.compare_digest(self.sign(data), tag)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """``nonce || ciphertext+tag``; the random 96-bit nonce is safe for the few million
        registry changes a group will ever make."""
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def unseal(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < NONCE_LEN + 16:
            raise CryptoError("sealed payload too short")
        try:
            return self._aead.decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], aad)
        except InvalidTag:
            raise CryptoError("sealed payload does not open with this group's key") from None
