"""Checks downlinks before the device acts on them: tag, device id, then the match.

Anything that fails is counted per reason (``rejects``) and ignored: forged, wrong-length,
other device's, or acknowledging a counter that is not in flight.
"""

from panicproto import frames
from panicproto.errors import ProtocolError


class Verifier:
    def __init__(self, key, device_id):
        self.key = key
        self.device_id = device_id
        self.rejects = {}

    def _reject(self, reason):
        self.rejects[reason] = self.rejects.get(reason, 0) + 1
        return None

    def check(self, data):
        """A verified Downlink addressed to this device, or None."""
        if data is None:
            return None
        try:
            down = frames.decode_downlink(data, self.key)
        except ProtocolError as e:
            return self._reject(e.reason)
        except Exception:
            return self._reject("malformed")
        if down.device_id != self.device_id:
            return self._reject("other_device")
        return down

    def unmatched(self):
        """Count a valid ACK for a counter that is not in flight (late or replayed)."""
        self._reject("unmatched")
