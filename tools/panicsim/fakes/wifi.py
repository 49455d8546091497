"""``wifi``: the radio joins the networks the simulated site has (``wifi_networks``:
ssid -> password, "" for open); traffic then uses the host's network (socketpool)."""

from types import SimpleNamespace


def module(b) -> SimpleNamespace:
    class _Radio:
        def __init__(self) -> None:
            self.connected = False
            self.enabled = True
            self.ipv4_address = None

        def connect(self, ssid, password=None, *, channel=0, bssid=None, timeout=None):
            b.check_alive()
            nets = getattr(b, "wifi_networks", {})
            if ssid not in nets:
                raise ConnectionError("No network with that ssid")
            if nets[ssid] and nets[ssid] != password:
                raise ConnectionError("Authentication failure")
            self.connected = True
            self.ipv4_address = "127.0.0.1"

    return SimpleNamespace(radio=_Radio())
