"""The one exception every decoder raises, with a machine-readable reason code.

Reason codes (documented in docs/protocol.md) are short ASCII strings so gateways can
count rejections per reason and diagnostics can show them.
"""

# Frame-level reasons.
SHORT = "short"  # fewer bytes than the frame type needs
LONG = "long"  # more bytes than the frame type allows
VERSION = "bad_version"  # protocol version nibble is not ours
TYPE = "bad_type"  # unknown message type for this direction
TAG = "bad_tag"  # authentication tag does not verify
FIELD = "bad_field"  # a field is out of range (encode side or decoded content)
KEY = "bad_key"  # key has the wrong length
# Serial-link reasons.
EMPTY = "empty"  # zero-length link frame between delimiters
COBS = "bad_cobs"  # COBS encoding is invalid
CRC = "bad_crc"  # CRC-16/CCITT mismatch
OVERSIZE = "oversize"  # link frame or payload over its limit (link.MAX_ENCODED/MAX_PAYLOAD)
TRUNCATED = "truncated"  # link frame payload shorter than its message type needs

REASONS = (SHORT, LONG, VERSION, TYPE, TAG, FIELD, KEY, EMPTY, COBS, CRC, OVERSIZE, TRUNCATED)


class ProtocolError(ValueError):
    """Raised for any input the protocol rejects; ``reason`` is one of REASONS."""

    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.detail = detail
