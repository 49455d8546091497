# CircuitPython's ssl.create_default_context (MicroPython's ssl has SSLContext only).
import tls


class SSLContext:
    def __init__(self):
        self._ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)

    def wrap_socket(self, sock, server_side=False, server_hostname=None):
        return self._ctx.wrap_socket(sock, server_side=server_side,
                                     server_hostname=server_hostname)


def create_default_context():
    return SSLContext()
