"""Malformed HTTP traffic for the soak benchmark (bench/bench_soak.py) and the flood test.

``KINDS`` maps a kind name to the raw bytes a misbehaving client sends on a fresh connection;
each kind is one request. ``Flood`` drives many of them at once over non-blocking sockets
(selectors, no HTTP library: the client must cost less CPU than the server it loads), with
a separate pool of slowloris connections that send half a request and then wait for the
server to cut them off, and valid signed alarms mixed in, each checked for its ACK.

Why raw sockets: a library would refuse to send most of these requests.
"""

from __future__ import annotations

import collections
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

FRAME_HEAD = (b"POST /v1/frames HTTP/1.1\r\nHost: gateway\r\n"
              b"Content-Type: application/octet-stream\r\n")


def _post(body: bytes, extra: bytes = b"", length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return FRAME_HEAD + extra + b"Content-Length: %d\r\n\r\n" % n + body


# kind -> (category, request bytes, half-close after sending)
KINDS: dict[str, tuple[str, bytes, bool]] = {
    # bad request lines
    "not_http": ("request_line", b"HELLO\r\n\r\n", False),
    "tls_hello": ("request_line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),
                  False),
    "bad_version": ("request_line", b"POST /v1/frames HTTP/7.3\r\nHost: g\r\n\r\n", False),
    "extra_token": ("request_line", b"GET /v1/health HTTP/1.1 extra\r\n\r\n", False),
    "nul_in_path": ("request_line", b"GET /v1/\x00health HTTP/1.1\r\nHost: g\r\n\r\n", False),
    # bad headers
    "no_colon": ("header", FRAME_HEAD + b"NoColonHere\r\n\r\n", False),
    "space_in_name": ("header", FRAME_HEAD + b"Bad Name: x\r\n\r\n", False),
    "bad_length": ("header", FRAME_HEAD + b"Content-Length: abc\r\n\r\n", False),
    "two_lengths": ("header", FRAME_HEAD + b"Content-Length: 19\r\nContent-Length: 20\r\n\r\n"
                    + bytes(19), False),
    "ctl_in_value": ("header", FRAME_HEAD + b"X-A: a\x01b\r\nContent-Length: 0\r\n\r\n", False),
    # oversize
    "long_line": ("oversize", b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: g\r\n\r\n", False),
    "long_header": ("oversize", FRAME_HEAD + b"X-Pad: " + b"p" * 4000 + b"\r\n\r\n", False),
    "many_headers": ("oversize", FRAME_HEAD + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
                     + b"\r\n", False),
    "big_body": ("oversize", _post(b"", length=100_000) + b"x" * 4000, False),
    "big_chunked": ("oversize", FRAME_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
                    + b"400\r\n" + b"y" * 1024 + b"\r\n0\r\n\r\n", False),
    # bad bodies
    "short_body": ("body", _post(b"\x11\x00\x00", length=19), True),
    "bad_chunk": ("body", FRAME_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
                  True),
    "garbage_frame": ("body", _post(bytes(range(0x20, 0x33))), False),
    "empty_body": ("body", _post(b""), False),
    "wrong_type": ("body", b"POST /v1/frames HTTP/1.1\r\nHost: g\r\nContent-Type: text/plain\r\n"
                   b"Content-Length: 19\r\n\r\n" + bytes(19), False),
}
SLOWLORIS = FRAME_HEAD + b"X-Slow: "  # then nothing: the server must cut it off


@dataclass
class Tally:
    sent: dict[str, int] = field(default_factory=collections.Counter)
    answered: dict[str, int] = field(default_factory=collections.Counter)  # got a status
    closed: dict[str, int] = field(default_factory=collections.Counter)  # cut without answer
    statuses: dict[int, int] = field(default_factory=collections.Counter)
    alarms_sent: int = 0
    alarms_acked: int = 0
    alarm_failures: list[str] = field(default_factory=list)

    @property
    def bad(self) -> int:
        return sum(self.sent.values())


class _Conn:
    __slots__ = ("sock", "kind", "out", "buf", "half_close", "alarm", "opened")

    def __init__(self, port: int, kind: str, out: bytes, half_close: bool,
                 alarm: bytes | None = None) -> None:
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", port))
        self.kind = kind
        self.out = out
        self.buf = b""
        self.half_close = half_close
        self.alarm = alarm  # the signed uplink when this connection carries a valid alarm
        self.opened = time.monotonic()


def _status(buf: bytes) -> int | None:
    if buf.startswith(b"HTTP/1.") and len(buf) >= 12:
        try:
            return int(buf[9:12])
        except ValueError:
            return None
    return None


def _complete(buf: bytes) -> bool:
    """A whole response (headers and Content-Length body) is in ``buf``."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end].lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return False
    stop = head.find(b"\r\n", at + 2)
    size = int(head[at + 17:stop if stop > 0 else None])
    return len(buf) >= end + 4 + size


class Flood:
    """Send ``KINDS`` round-robin on ``concurrency`` connections, plus ``slow`` slowloris
    connections held open, and a valid alarm every ``alarm_every`` bad requests.

    ``make_alarm(n)`` returns the n-th signed alarm; ``check_ack(uplink, body)`` says whether
    a 200 body acknowledges it. ``on_progress(tally)`` is called every ``progress_every``
    bad requests (the soak samples RSS there)."""

    def __init__(self, port: int, *, concurrency: int = 32, slow: int = 8,
                 alarm_every: int = 1000,
                 make_alarm: Callable[[int], bytes] | None = None,
                 check_ack: Callable[[bytes, bytes], bool] | None = None,
                 kinds: dict[str, tuple[str, bytes, bool]] | None = None,
                 conn_timeout_s: float = 30.0) -> None:
        self.port = port
        self.concurrency = concurrency
        self.slow = slow
        self.alarm_every = alarm_every
        self.make_alarm = make_alarm
        self.check_ack = check_ack
        self.kinds = kinds or KINDS
        self.conn_timeout_s = conn_timeout_s
        self.tally = Tally()

    def _kinds(self) -> Iterator[str]:
        names = list(self.kinds)
        while True:
            yield from names

    def run(self, total: int, on_progress: Callable[[Tally], None] | None = None,
            progress_every: int = 100_000) -> Tally:
        t = self.tally
        sel = selectors.DefaultSelector()
        kinds = self._kinds()
        started = 0  # bad requests started (slowloris included)
        alarms = 0
        live: set[_Conn] = set()
        slow_live = 0
        next_progress = progress_every

        def open_conn(kind: str, out: bytes, half: bool, alarm: bytes | None = None) -> None:
            c = _Conn(self.port, kind, out, half, alarm)
            live.add(c)
            sel.register(c.sock, selectors.EVENT_WRITE | selectors.EVENT_READ, c)

        def finish(c: _Conn) -> None:
            nonlocal slow_live
            sel.unregister(c.sock)
            c.sock.close()
            live.discard(c)
            st = _status(c.buf)
            if c.kind == "slowloris":
                slow_live -= 1
            if c.alarm is not None:
                ok = st == 200 and self.check_ack is not None and self.check_ack(
                    c.alarm, c.buf[c.buf.find(b"\r\n\r\n") + 4:])
                t.alarms_acked += ok
                if not ok:
                    t.alarm_failures.append(f"status {st}: {c.buf[:80]!r}")
                return
            if st is not None:
                t.answered[c.kind] += 1
                t.statuses[st] += 1
            else:
                t.closed[c.kind] += 1

        while started < total or live:
            while started < total and slow_live < self.slow:
                open_conn("slowloris", SLOWLORIS, False)
                slow_live += 1
                started += 1
                t.sent["slowloris"] += 1
            while started < total and len(live) - slow_live < self.concurrency:
                if (self.make_alarm is not None and self.alarm_every
                        and started // self.alarm_every > alarms):
                    up = self.make_alarm(alarms)
                    alarms += 1
                    t.alarms_sent += 1
                    open_conn("alarm", _post(up), False, alarm=up)
                    continue
                k = next(kinds)
                _, out, half = self.kinds[k]
                open_conn(k, out, half)
                started += 1
                t.sent[k] += 1
            if on_progress is not None and started >= next_progress:
                on_progress(t)
                next_progress += progress_every
            now = time.monotonic()
            for key, ev in sel.select(0.05):
                c = key.data
                if ev & selectors.EVENT_WRITE and c.out:
                    try:
                        n = c.sock.send(c.out)
                    except (BlockingIOError, InterruptedError):
                        n = 0
                    except OSError:  # refused/reset: the server dropped it
                        finish(c)
                        continue
                    c.out = c.out[n:]
                    if not c.out:
                        if c.half_close:
                            try:
                                c.sock.shutdown(socket.SHUT_WR)
                            except OSError:
                                pass
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                if ev & selectors.EVENT_READ:
                    try:
                        data = c.sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        finish(c)
                        continue
                    c.buf += data
                    if _complete(c.buf):
                        finish(c)
            for c in [c for c in live if now - c.opened > self.conn_timeout_s]:
                finish(c)  # the server never answered nor closed: counted as closed
        if on_progress is not None and started >= next_progress:
            on_progress(t)
        sel.close()
        return t
