import gate_config


class _Radio:
    connected = False
    ipv4_address = None
    enabled = True

    def connect(self, ssid, password=None, channel=0, bssid=None, timeout=None):
        if ssid not in gate_config.WIFI_NETWORKS:
            raise ConnectionError("No network with that ssid")
        if gate_config.WIFI_NETWORKS[ssid] != password:
            raise ConnectionError("Authentication failure")
        self.connected = True
        self.ipv4_address = "127.0.0.1"


radio = _Radio()
