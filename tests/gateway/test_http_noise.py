"""Malformed HTTP requests are counted and logged at a bounded rate (issue 11 point 3), on a
real `panicgw run`: every kind of bad request bench/bench_soak.py uses (bad request lines,
bad headers, oversize lines/headers/bodies, broken bodies, slowloris), many times each.

Not timed: what is asserted is that each one is counted under its reason, that the log
stays within the rejection log budget (no aiohttp traceback per request), and that a valid
alarm sent in the middle of it all is ACKed. Throughput and RSS are bench/'s.
"""

from __future__ import annotations

import http.client
import sys
from collections import Counter
from pathlib import Path

from gwkit import KEY, uplink, wait_until
from gwproc import GatewayProcess

from panicproto import frames

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from malformed import KINDS, Flood  # noqa: E402  (the soak benchmark's request kinds)

# what each kind must be counted as (rejection reason in the status API)
REASON = {
    "not_http": "http_bad_method", "tls_hello": "http_bad_method",
    "bad_version": "http_bad_request_line", "extra_token": "http_bad_request_line",
    "nul_in_path": "http_bad_request_line",
    "no_colon": "http_bad_header", "space_in_name": "http_bad_header",
    "bad_length": "http_bad_header", "two_lengths": "http_bad_header",
    "ctl_in_value": "http_bad_header",
    "long_line": "http_too_long", "long_header": "http_too_long",
    "many_headers": "http_too_long",
    "big_body": "http_too_large", "big_chunked": "http_too_large",
    "short_body": "http_bad_body", "bad_chunk": "http_bad_body",
    "garbage_frame": "bad_version", "empty_body": "short", "wrong_type": "http_content_type",
    "slowloris": "http_slow_client",
}
PER_KIND = 60
LOG_PER_MIN = 20


def test_malformed_requests_counted_and_log_bounded(tmp_path):
    with GatewayProcess(tmp_path, http={"client_timeout_s": 0.5},
                        pipeline={"reject_log_per_min": LOG_PER_MIN}) as gw:
        flood = Flood(gw.http_port, concurrency=16, slow=4, alarm_every=500,
                      make_alarm=lambda n: uplink(counter=0x00800001 + n, wifi=True),
                      check_ack=lambda up, body: frames.decode_downlink(body, KEY).counter
                      == frames.decode_uplink(up).counter)
        total = PER_KIND * (len(KINDS) + 1)
        t = flood.run(total)
        assert t.alarms_sent >= 2 and t.alarms_acked == t.alarms_sent, t.alarm_failures
        sent = Counter(t.sent)
        want: Counter[str] = Counter()
        for kind, n in sent.items():
            want[REASON[kind]] += n
        assert set(sent) == set(REASON)  # every kind was sent

        def counted() -> dict[str, int]:
            return gw.status()["rejections"]
        assert wait_until(lambda: all(counted().get(r, 0) >= n for r, n in want.items()), 30), (
            {r: (counted().get(r, 0), n) for r, n in want.items()
             if counted().get(r, 0) != n})
        got = counted()
        for reason, n in want.items():  # each request counted once, under its own reason
            assert got[reason] == n, (reason, got[reason], n)
    records = gw.log_records()
    text = gw.log_path.read_text()
    assert "Traceback" not in text and not any(r["logger"].startswith("aiohttp")
                                               for r in records)
    rejected_lines = [r for r in records if r["msg"].startswith("rejected ")]
    # one budget for all of it: at most a minute's worth (+1 for the refill while it ran)
    assert LOG_PER_MIN - 1 <= len(rejected_lines) <= LOG_PER_MIN + 2, len(rejected_lines)
    assert sum(want.values()) > 10 * len(rejected_lines)
    assert len(records) <= LOG_PER_MIN + 12  # plus start/stop lines


def test_connection_cap_refuses_and_counts_then_recovers(tmp_path):
    """Connections over [http] max_clients are closed at once and counted; the slots free
    up as connections end (the books kept by ingest_http._Tracked)."""
    import socket

    from gwharness import GatewayThread, make_config
    from gwkit import make_record

    from panicgw.store import Store

    cfg = make_config(tmp_path, http={"max_clients": 3, "client_timeout_s": 30.0})
    s = Store(cfg.db_path)
    s.upsert_device(make_record())
    s.close()
    with GatewayThread(cfg) as g:
        port = g.gw.http.port
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        assert wait_until(lambda: g.status()["http"]["connections"] == 3)
        extra = socket.create_connection(("127.0.0.1", port))
        extra.settimeout(5)
        assert extra.recv(10) == b""  # closed by the gateway
        extra.close()
        assert g.status()["rejections"]["http_too_many_clients"] == 1
        held.pop().close()
        assert wait_until(lambda: g.status()["http"]["connections"] == 2)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("POST", "/v1/frames", body=uplink(counter=0x00900001, wifi=True),
                  headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse()
        assert r.status == 200 and frames.decode_downlink(r.read(), KEY).counter == 0x00900001
        c.close()
        for h in held:
            h.close()
