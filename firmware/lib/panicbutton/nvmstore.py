"""Layout of ``microcontroller.nvm``: the provisioned identity and the boot epoch.

::

    0   4  magic b"PBK1"
    4   4  device id (big-endian)
    8  16  key
    24  2  CRC-16/CCITT-FALSE over bytes 0-23
    32  4  epoch slot A: epoch u16 | crc16(b"EP" + epoch) u16
    36  4  epoch slot B
    40  6  TEST request: b"PT" | nonce u16 | crc16(b"PT" + nonce) u16

The installer writes bytes 0-25 (``identity_record``) once; the firmware writes one
epoch slot per cold boot, alternating slots, so a power cut while writing one slot
leaves the other (older) slot intact: a torn write can never lower the epoch.

``panictool verify`` writes a TEST request (``remote_test_record``) over the raw REPL
and soft-reboots the board. At boot the firmware erases the request *before* it queues
the one TEST (``take_remote_test``), so a crash or reset loop cannot send it again; a
torn write (of the request or of its erasure) fails the CRC and sends nothing. Boards
with fewer than ``NVM_REMOTE_TEST_MIN`` bytes of NVM simply lack the feature.
"""

import struct

from panicproto.crc import crc16

MAGIC = b"PBK1"
IDENTITY_LEN = 26
SLOT_A = 32
SLOT_B = 36
SLOT_LEN = 4
NVM_MIN = 40
EPOCH_MAX = 0xFFFF
REMOTE_TEST_AT = 40
REMOTE_TEST_LEN = 6
REMOTE_TEST_MAGIC = b"PT"
NVM_REMOTE_TEST_MIN = REMOTE_TEST_AT + REMOTE_TEST_LEN


def identity_record(device_id, key):
    """Bytes the installer writes at NVM offset 0 (``nvm[0:26] = record``)."""
    if len(key) != 16:
        raise ValueError("key must be 16 bytes")
    body = MAGIC + struct.pack(">I", device_id) + bytes(key)
    return body + struct.pack(">H", crc16(body))


def read_identity(nvm):
    """(device_id, key) or None when the NVM holds no valid identity (not provisioned)."""
    if len(nvm) < NVM_MIN:
        return None
    rec = bytes(nvm[0:IDENTITY_LEN])
    if rec[0:4] != MAGIC:
        return None
    if struct.unpack(">H", rec[24:26])[0] != crc16(rec[0:24]):
        return None
    return struct.unpack(">I", rec[4:8])[0], rec[8:24]


def _slot(epoch):
    e = struct.pack(">H", epoch)
    return e + struct.pack(">H", crc16(b"EP" + e))


def _read_slot(nvm, off):
    raw = bytes(nvm[off:off + SLOT_LEN])
    e = raw[0:2]
    if struct.unpack(">H", raw[2:4])[0] != crc16(b"EP" + e):
        return None
    return struct.unpack(">H", e)[0]


class EpochStore:
    """Epoch persisted in two alternating NVM slots; ``writes`` counts NVM writes."""

    def __init__(self, nvm):
        self.nvm = nvm
        self.writes = 0

    def read(self):
        """Highest valid epoch (0 when neither slot is valid: a fresh board)."""
        a = _read_slot(self.nvm, SLOT_A)
        b = _read_slot(self.nvm, SLOT_B)
        best = 0
        for v in (a, b):
            if v is not None and v > best:
                best = v
        return best

    def write(self, epoch):
        """Persist ``epoch`` into the slot that does not hold the current maximum."""
        if not 0 < epoch <= EPOCH_MAX:
            raise ValueError("epoch out of range")
        a = _read_slot(self.nvm, SLOT_A)
        b = _read_slot(self.nvm, SLOT_B)
        if a is None:
            off = SLOT_A
        elif b is None:
            off = SLOT_B
        else:
            off = SLOT_A if a < b else SLOT_B
        self.writes += 1
        self.nvm[off:off + SLOT_LEN] = _slot(epoch)
        if _read_slot(self.nvm, off) != epoch:
            raise OSError("NVM write did not verify")


def remote_test_record(nonce):
    """Bytes the installer tool writes at ``REMOTE_TEST_AT`` to ask for one TEST at next boot."""
    body = REMOTE_TEST_MAGIC + struct.pack(">H", nonce)
    return body + struct.pack(">H", crc16(body))


def read_remote_test(nvm):
    """Nonce of a valid pending TEST request, or None (none, torn, or NVM too small)."""
    if len(nvm) < NVM_REMOTE_TEST_MIN:
        return None
    raw = bytes(nvm[REMOTE_TEST_AT:REMOTE_TEST_AT + REMOTE_TEST_LEN])
    if raw[0:2] != REMOTE_TEST_MAGIC or struct.unpack(">H", raw[4:6])[0] != crc16(raw[0:4]):
        return None
    return struct.unpack(">H", raw[2:4])[0]


def take_remote_test(nvm):
    """Erase a pending TEST request and return its nonce; None when there was none or the
    erase did not stick (then no TEST: one that cannot be cleared would repeat each boot).
    Never raises: a flash error must not stop the button from booting."""
    try:
        nonce = read_remote_test(nvm)
        if nonce is None:
            return None
        nvm[REMOTE_TEST_AT:REMOTE_TEST_AT + REMOTE_TEST_LEN] = b"\xff" * REMOTE_TEST_LEN
        if read_remote_test(nvm) is not None:
            return None
        return nonce
    except Exception:
        return None
