"""CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): the serial link's frame check, and the
button's NVM and sleep-memory records. Its own module so a button can use it without
loading the whole link codec (RAM is tight on a 64 KB heap).

Where ``binascii`` has ``crc_hqx`` (CPython: the gateway checks every link frame with
it) that C function does the work; boards (CircuitPython's and MicroPython's
``binascii`` lack it) run the portable loop, ``_crc16``. ``crc_hqx(data, 0xFFFF)`` is
this CRC.
"""


def _crc16(data, crc=0xFFFF):
    """CRC of ``data``; crc16(b"123456789") == 0x29B1."""
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        crc &= 0xFFFF
    return crc


crc16 = _crc16
try:
    from binascii import crc_hqx

    def crc16(data, crc=0xFFFF):  # noqa: F811 (the C function where there is one)
        return crc_hqx(data, crc)
except ImportError:
    pass
