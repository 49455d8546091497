"""Device identities: new id and key, the NVM record, and a key fingerprint.

The fingerprint lets ``verify`` prove the board and the gateway hold the same key without
the key leaving the board: the board hashes its own NVM key and prints only the hash.

A rekey writes the new key together with a restarted counter (:func:`write_new_key`): the
gateway restarts the device's replay window with every new key, so both ends start the new
key's counter space from the bottom, whatever the old counter was (even its top, epoch
0xFFFF, where nothing else can help).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Container

from panicbutton import nvmstore
from panictool.transport import Transport, TransportError

FP_PREFIX = b"panic-button key fingerprint\x00"
FP_HEX = 16  # 64 bits: plenty to tell keys apart, useless for guessing one


def new_identity(taken: Container[int] = ()) -> tuple[int, bytes]:
    """A random device id (never 0 or 0xFFFFFFFF, never one in ``taken``) and a 16-byte key."""
    while True:
        device_id = secrets.randbelow(0xFFFFFFFE) + 1
        if device_id not in taken:
            return device_id, secrets.token_bytes(16)


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(FP_PREFIX + bytes(key)).hexdigest()[:FP_HEX]


def board_identity(t: Transport) -> tuple[int, str] | None:
    """(device id, key fingerprint) of the identity in the board's NVM, computed on the board
    (the key is never sent to this computer); None when the board is not provisioned."""
    code = (
        "import microcontroller, struct, binascii\n"
        "try:\n from hashlib import sha256 as _h\n _H=lambda b:_h(b)\n"
        "except ImportError:\n import hashlib as _hl\n _H=lambda b:_hl.new('sha256',b)\n"
        "def _crc(d):\n"
        " c=0xFFFF\n"
        " for b in d:\n"
        "  c^=b<<8\n"
        "  for _ in range(8):\n"
        "   c=((c<<1)^0x1021) if c&0x8000 else (c<<1)\n"
        "  c&=0xFFFF\n"
        " return c\n"
        f"_r=bytes(microcontroller.nvm[0:{nvmstore.IDENTITY_LEN}])\n"
        "if _r[0:4]!=b'PBK1' or struct.unpack('>H',_r[24:26])[0]!=_crc(_r[0:24]):\n"
        " print('NONE')\nelse:\n"
        f" print(struct.unpack('>I',_r[4:8])[0], binascii.hexlify(_H({FP_PREFIX!r}+_r[8:24])"
        f".digest()).decode()[:{FP_HEX}])\n"
    )
    out = t.exec(code).strip()
    if out == "NONE":
        return None
    parts = out.split()
    if len(parts) != 2 or not parts[0].isdigit():
        raise TransportError(f"board answered something unexpected: {out[:60]!r}")
    return int(parts[0]), parts[1]


def write_identity(t: Transport, device_id: int, key: bytes) -> None:
    """Write the identity record at NVM offset 0 and check it reads back."""
    size = t.board_info()["nvm_size"]
    if size < nvmstore.NVM_MIN:
        raise TransportError(f"the board has {size} bytes of NVM; the firmware needs "
                             f"{nvmstore.NVM_MIN}", "this board cannot hold a panic-button key")
    t.nvm_write(0, nvmstore.identity_record(device_id, key))


KEY_AND_COUNTER = nvmstore.SLOT_B + nvmstore.SLOT_LEN  # bytes 0-39: identity, epoch slots


def key_and_counter_bytes(t: Transport) -> bytes:
    """NVM bytes 0-39 as they are (the identity record and the counter's epoch slots), so
    a rekey that fails after writing can put both back (:func:`restore_identity`)."""
    _check_size(t)
    return t.nvm_read(0, KEY_AND_COUNTER)


def write_new_key(t: Transport, device_id: int, key: bytes) -> None:
    """The new key and a restarted counter in ONE write of bytes 0-39, read back: the board
    never holds the new key with the old counter (which the gateway's restarted window
    would take, and which may be at the top of the counter space) nor the old key with a
    restarted one. The epoch slots get the firmware's record for epoch 0, so its next boot
    starts epoch 1 (``panicbutton.counter``); the bytes between record and slots are kept."""
    _check_size(t)
    now = t.nvm_read(0, KEY_AND_COUNTER)
    t.nvm_write(0, nvmstore.identity_record(device_id, key)
                + now[nvmstore.IDENTITY_LEN:nvmstore.SLOT_A] + epoch_record(0))


def epoch_record(epoch: int) -> bytes:
    """Both epoch slots (NVM bytes 32-39) holding ``epoch``, made by the firmware's own slot
    writer (kept out of the firmware's public names: every byte of its import counts against
    the button's RAM budget)."""
    slot = nvmstore._slot(epoch)
    return slot + slot


def board_epoch(t: Transport) -> int:
    """The counter epoch in the board's NVM, read with the firmware's own reader (0: the
    next boot starts epoch 1)."""
    _check_size(t)
    return nvmstore.EpochStore(bytearray(t.nvm_read(0, KEY_AND_COUNTER))).read()


def _check_size(t: Transport) -> None:
    size = t.board_info()["nvm_size"]
    if size < nvmstore.NVM_MIN:
        raise TransportError(f"the board has {size} bytes of NVM; the firmware needs "
                             f"{nvmstore.NVM_MIN}", "this board cannot hold a panic-button key")


def board_key(t: Transport) -> tuple[int, bytes] | None:
    """(device id, key) from the board's NVM, for checking the tag of the gateway's ACK on
    this computer (docs/installing.md: verify). The key stays in memory: never printed,
    logged or written anywhere."""
    if t.board_info()["nvm_size"] < nvmstore.NVM_MIN:
        return None
    return nvmstore.read_identity(t.nvm_read(0, nvmstore.NVM_MIN))


def identity_bytes(t: Transport) -> bytes:
    """The raw identity record (whatever is there, valid or not), so a command that fails
    after writing a new one can put this back and leave the board as it found it."""
    return t.nvm_read(0, nvmstore.IDENTITY_LEN)


def restore_identity(t: Transport, record: bytes) -> None:
    """Write back what :func:`identity_bytes` or :func:`key_and_counter_bytes` read (a
    failed provision or rekey)."""
    t.nvm_write(0, record)
