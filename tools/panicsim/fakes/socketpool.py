"""``socketpool``: SocketPool over the host's sockets (127.0.0.1 servers in tests)."""

import socket as _host
from types import SimpleNamespace


def module(b) -> SimpleNamespace:
    class SocketPool:
        AF_INET = _host.AF_INET
        SOCK_STREAM = _host.SOCK_STREAM
        SOCK_DGRAM = _host.SOCK_DGRAM
        IPPROTO_TCP = _host.IPPROTO_TCP
        SOL_SOCKET = _host.SOL_SOCKET
        SO_REUSEADDR = _host.SO_REUSEADDR
        TCP_NODELAY = _host.TCP_NODELAY
        timeout = TimeoutError
        gaierror = _host.gaierror

        def __init__(self, radio) -> None:
            if not radio.connected:
                raise RuntimeError("Wi-Fi is not connected")

        def getaddrinfo(self, *a, **kw):
            b.check_alive()
            return _host.getaddrinfo(*a, **kw)

        def socket(self, family=_host.AF_INET, type=_host.SOCK_STREAM, proto=0):
            b.check_alive()
            return _host.socket(family, type, proto)

    return SimpleNamespace(SocketPool=SocketPool)
