"""Wi-Fi path: POST {gateway_url}/v1/frames with the raw 19-byte uplink.

The gateway answers 200 with the 18-byte downlink (ACK or RESYNC); any other status,
a timeout or a network error is "no ack" and the policy retries. ``session_fn`` returns
an ``adafruit_requests.Session`` (connecting Wi-Fi first) or None when offline.
"""

HEADERS = {"Content-Type": "application/octet-stream"}


class WifiPath:
    name = "wifi"

    def __init__(self, session_fn, gateway_url, timeout_s=5):
        self.session_fn = session_fn
        self.url = gateway_url + "/v1/frames"
        self.timeout_s = timeout_s
        self.errors = {}  # failed exchanges per reason

    def _count(self, reason):
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def exchange(self, frame):
        """The response body of a 200 answer, or None."""
        try:
            session = self.session_fn()
        except Exception:  # Wi-Fi connect failures come as several types
            self._count("connect")
            return None
        if session is None:
            self._count("offline")
            return None
        try:
            r = session.post(self.url, data=bytes(frame), headers=HEADERS,
                             timeout=self.timeout_s)
        except Exception:  # OSError, RuntimeError, OutOfRetries, ...
            self._count("network")
            return None
        try:
            if r.status_code != 200:
                self._count("http_%d" % r.status_code)
                return None
            return bytes(r.content)
        except Exception:
            self._count("read")
            return None
        finally:
            try:
                r.close()
            except Exception:
                pass
