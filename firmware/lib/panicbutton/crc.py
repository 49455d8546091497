"""CRC-16/CCITT-FALSE for records in NVM and sleep memory.

Same polynomial as the serial link's CRC, kept here so the button does not load the
whole link module (RAM is tight on a 64 KB heap).
"""


def crc16(data, crc=0xFFFF):
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        crc &= 0xFFFF
    return crc
