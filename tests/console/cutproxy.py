"""A network between the browser and the console that a test can cut, freeze and heal."""

from __future__ import annotations

import contextlib
import socket
import threading

from consolekit import free_port


class CutProxy:
    """A TCP relay on its own port in a thread. ``cut()`` closes every connection through it
    and refuses new ones (a switch rebooting: the browser sees the error at once);
    ``freeze()`` keeps connections open but lets no byte through (a cable pulled or a
    half-open NAT entry: only the missing heartbeat tells); ``heal()`` ends both."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.open = True
        self.frozen = False
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", self.port))
        self.srv.listen(64)
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.srv.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if not self.frozen:
                    b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open = False
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def freeze(self) -> None:
        self.frozen = True

    def heal(self) -> None:
        if self.frozen:  # what went through a frozen connection is lost: end them
            self.cut()
        self.frozen = False
        self.open = True

    def close(self) -> None:
        self.stopped = True
        self.cut()
        self.srv.close()
