# socketpool.SocketPool over the VM's sockets (what CircuitPython's Wi-Fi stack offers).
import socket as _s


class SocketPool:
    AF_INET = _s.AF_INET
    SOCK_STREAM = _s.SOCK_STREAM
    SOCK_DGRAM = _s.SOCK_DGRAM
    IPPROTO_TCP = 6
    TCP_NODELAY = 1
    SOL_SOCKET = _s.SOL_SOCKET
    SO_REUSEADDR = _s.SO_REUSEADDR

    def __init__(self, radio):
        if not radio.connected:
            raise RuntimeError("Wi-Fi is not connected")

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        return _s.getaddrinfo(host, port, family, type, proto, flags)

    def socket(self, family=_s.AF_INET, type=_s.SOCK_STREAM, proto=0):
        return _s.socket(family, type, proto)
