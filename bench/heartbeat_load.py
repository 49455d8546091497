"""Heartbeat load for the latency benchmark: ``rate`` frames/s POSTed to a running gateway.

Run as its own process (``python bench/heartbeat_load.py PORT RATE SECONDS DEVICES [PROCS]``)
so the load does not share the measuring process's interpreter lock. It prints
``{"ready": N}`` once its frames are signed, then one JSON object: the rate achieved, errors,
and the heartbeat ACK p50/p99.

The load is split over PROCS worker processes (default 2), each pacing its share on its own
keep-alive connections: one process reached only 750-850 of 1,000 heartbeats/s beside the
gateway and the benchmark on 2 cores, because each late wake-up of its single loop delayed
every send behind it; two independent senders each absorb their own.

Why raw sockets and not an HTTP client library: the load shares the 2 cores with the gateway
it measures, so its own CPU cost is part of the error. Python HTTP clients (http.client,
aiohttp) spend about 350 us of CPU per request on the reference machine, as much as the
gateway's own HTTP server; writing pre-built HTTP/1.1 requests (what a button's
adafruit_requests sends) on keep-alive sockets costs about 100 us. Responses are parsed just
enough to check the status and consume the body (Content-Length).
"""

from __future__ import annotations

import collections
import json
import multiprocessing as mp
import selectors
import socket
import statistics
import sys
import time

from panicproto import frames

CONNECTIONS = 32
REQUEST = (b"POST /v1/frames HTTP/1.1\r\nHost: gateway\r\n"
           b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n")


def _key(i: int) -> bytes:
    return i.to_bytes(4, "big") * 4


def signed_heartbeats(count: int, n_dev: int, epoch: int = 3) -> list[bytes]:
    """``count`` heartbeats cycling over ``n_dev`` devices, counters rising per lap."""
    return [frames.encode_uplink(_key(k % n_dev), frames.Uplink(
        frames.HEARTBEAT, 0x10000000 + k % n_dev, frames.make_counter(epoch, k // n_dev + 1),
        battery_mv=3700)) for k in range(count)]


def response_end(buf: bytes) -> tuple[int, int] | None:
    """(status, length of the whole response) once ``buf`` holds one, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError("response without Content-Length")
    stop = head.find(b"\r\n", at + 2)
    size = int(head[at + 17:stop if stop > 0 else None])
    total = end + 4 + size
    return (int(buf[9:12]), total) if len(buf) >= total else None


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.sent_at = 0.0


def _send(port: int, requests: list[bytes], rate: float, conns: int,
          ) -> tuple[list[float], int, int, float]:
    """Send ``requests`` at ``rate``/s over ``conns`` keep-alive connections: (ACK times in
    ms, non-200 answers, sends more than 5 ms late, elapsed s)."""
    sel = selectors.DefaultSelector()
    idle = collections.deque(Conn(port) for _ in range(conns))  # FIFO: all stay warm
    for c in idle:
        sel.register(c.sock, selectors.EVENT_READ, c)
    acks: list[float] = []
    errors = late = 0
    k = 0
    t0 = time.monotonic()
    while k < len(requests) or len(idle) < conns:
        now = time.monotonic()
        while k < len(requests) and idle and t0 + k / rate <= now:
            c = idle.popleft()
            late += now - (t0 + k / rate) > 0.005  # sent over 5 ms after it was due
            c.sent_at = time.perf_counter()
            c.sock.sendall(requests[k])  # ~100 bytes into an empty socket buffer
            k += 1
        timeout = max(0.0, t0 + k / rate - time.monotonic()) if idle else 0.05
        for key, _ in sel.select(timeout if k < len(requests) else 0.05):
            c = key.data
            data = c.sock.recv(4096)
            if not data:
                raise RuntimeError("gateway closed a keep-alive connection")
            c.buf += data
            done = response_end(c.buf)
            if done is None:
                continue
            status, size = done
            c.buf = c.buf[size:]
            acks.append((time.perf_counter() - c.sent_at) * 1000)
            errors += status != 200
            idle.append(c)
    elapsed = time.monotonic() - t0
    for c in idle:
        c.sock.close()
    return acks, errors, late, elapsed


def _worker(port: int, share: list[bytes], rate: float, conns: int, ready: mp.Queue,
            go: mp.Event, out: mp.Queue) -> None:
    ready.put(len(share))
    go.wait()
    out.put(_send(port, share, rate, conns))


def run(port: int, rate: float, secs: float, n_dev: int, procs: int = 2) -> dict[str, float]:
    bodies = signed_heartbeats(int(rate * secs), n_dev)
    requests = [REQUEST % len(b) + b for b in bodies]
    ctx = mp.get_context("fork")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    conns = max(4, CONNECTIONS // procs)
    workers = [ctx.Process(target=_worker, args=(port, requests[w::procs], rate / procs, conns,
                                                 ready, go, out), daemon=True)
               for w in range(procs)]
    for w in workers:
        w.start()
    n = sum(ready.get(timeout=120) for _ in workers)
    print(json.dumps({"ready": n}), flush=True)
    go.set()
    results = [out.get() for _ in workers]
    for w in workers:
        w.join(10)
    acks = [a for r in results for a in r[0]]
    q = statistics.quantiles(acks, n=100)
    return {"sent": len(acks), "rate": len(acks) / max(r[3] for r in results),
            "errors": sum(r[1] for r in results), "sent_over_5ms_late": sum(r[2] for r in results),
            "connections": conns * procs, "processes": procs,
            "ack_p50_ms": statistics.median(acks), "ack_p99_ms": q[98]}


if __name__ == "__main__":
    port, rate, secs, n_dev = (int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]),
                               int(sys.argv[4]))
    procs = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    print(json.dumps(run(port, rate, secs, n_dev, procs)), flush=True)
