"""HTTP ingest against the real daemon, with the buttons' real client (adafruit_requests on
CPython sockets): ACKs, duplicates, every rejection status, size/rate/slow-client limits,
HTTPS, and random bodies (hypothesis)."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import time

import adafruit_requests
import pytest
from gwharness import GatewayThread, make_config
from gwkit import DEV, KEY, make_record, uplink
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panicgw.store import Store
from panicproto import frames

OCTET = {"Content-Type": "application/octet-stream"}


def _register(cfg) -> None:
    s = Store(cfg.db_path)
    s.upsert_device(make_record())
    s.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http")
    cfg = make_config(tmp, http={"rate_per_s": 10000.0, "rate_burst": 10000,
                                 "client_timeout_s": 0.6})
    _register(cfg)
    with GatewayThread(cfg) as g:
        yield g


@pytest.fixture
def session():
    return adafruit_requests.Session(socket, ssl.create_default_context())


def _post(session, gw, body: bytes, headers=OCTET):
    r = session.post(gw.url + "/v1/frames", data=body, headers=headers)
    try:
        return r.status_code, r.content
    finally:
        r.close()


def test_alarm_acked_then_duplicate_reacked(gw, session):
    frame = uplink(counter=0x00010001, wifi=True)
    status, body = _post(session, gw, frame)
    assert status == 200 and len(body) == frames.DOWNLINK_LEN
    down = frames.decode_downlink(body, KEY)
    assert (down.kind, down.device_id, down.counter, down.status) == (
        frames.ACK, DEV, 0x00010001, frames.STORED)
    status, body = _post(session, gw, frame)
    assert status == 200 and frames.decode_downlink(body, KEY).counter == 0x00010001
    alarms = [r for r in gw.db(Store.outbox_rows)
              if r["payload"]["incident_id"].startswith("0000BEEF-00010001")]
    assert len(alarms) == 1


def test_rejections_statuses_and_counts(gw, session):
    before = dict(gw.status()["rejections"])
    bad = bytearray(uplink(counter=0x00010002))
    bad[-2] ^= 0x40
    assert _post(session, gw, bytes(bad))[0] == 403
    assert _post(session, gw, uplink(counter=3, device_id=0x42))[0] == 403
    status, body = _post(session, gw, b"\x11\x00\x00")
    assert status == 400 and b"short" in body
    assert _post(session, gw, bytes(200))[0] == 413
    assert _post(session, gw, uplink(counter=0x00010003),
                 {"Content-Type": "text/plain"})[0] == 415
    after = gw.status()["rejections"]
    for reason in ("bad_tag", "unknown_device", "short", "http_too_large",
                   "http_content_type"):
        assert after.get(reason, 0) == before.get(reason, 0) + 1, reason
    # good frames are not blocked by all that
    assert _post(session, gw, uplink(counter=0x00010004))[0] == 200


def test_health(gw, session):
    r = session.get(gw.url + "/v1/health")
    doc = r.json()
    r.close()
    assert doc["status"] == "ok" and doc["gateway_id"] == "gw-test"


def test_slow_client_is_cut_off_without_blocking_others(gw, session):
    before = gw.status()["rejections"].get("http_slow_client", 0)
    slow = socket.create_connection(("127.0.0.1", gw.gw.http.port))
    slow.sendall(b"POST /v1/frames HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    assert _post(session, gw, uplink(counter=0x00010010))[0] == 200
    slow.settimeout(5)
    t0 = time.monotonic()
    assert slow.recv(100) == b""  # server closed it
    assert time.monotonic() - t0 < 4.5
    slow.close()
    assert gw.status()["rejections"].get("http_slow_client", 0) == before + 1


def test_slow_body_times_out(gw):
    c = socket.create_connection(("127.0.0.1", gw.gw.http.port))
    c.sendall(b"POST /v1/frames HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream"
              b"\r\nContent-Length: 19\r\n\r\n\x11\x00")
    c.settimeout(5)
    resp = c.recv(200)
    c.close()
    assert resp.startswith(b"HTTP/1.1 408")


def test_rate_limit_per_client(tmp_path, session):
    cfg = make_config(tmp_path, http={"rate_per_s": 0.5, "rate_burst": 3})
    _register(cfg)
    with GatewayThread(cfg) as g:
        codes = [_post(session, g, uplink(counter=0x00020000 + i))[0] for i in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        assert g.status()["rejections"]["http_rate_limited"] == 2


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed to make a cert")
def test_https_with_configured_certificate(tmp_path):
    cert, key = tmp_path / "gw.crt", tmp_path / "gw.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    cfg = make_config(tmp_path, http={"tls_cert": str(cert), "tls_key": str(key)})
    _register(cfg)
    with GatewayThread(cfg) as g:
        assert g.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(cert))
        s = adafruit_requests.Session(socket, ctx)
        status, body = _post(s, g, uplink(counter=0x00030001))
        assert status == 200 and frames.decode_downlink(body, KEY).kind == frames.ACK
        # plain HTTP to the TLS port gets no ACK
        c = http.client.HTTPConnection("127.0.0.1", g.gw.http.port, timeout=5)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            c.request("POST", "/v1/frames", body=uplink(counter=0x00030002), headers=OCTET)
            assert c.getresponse().status != 200
        c.close()


@settings(max_examples=120, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=100),
                      st.builds(lambda b, i: b[:i] + bytes([b[i] ^ 1]) + b[i + 1:],
                                st.just(uplink(counter=0x00050001)),
                                st.integers(0, 18))),
       ctype=st.sampled_from(["application/octet-stream", "text/plain", ""]))
def test_property_random_bodies_never_acked_never_crash(gw, body, ctype):
    c = http.client.HTTPConnection("127.0.0.1", gw.gw.http.port, timeout=5)
    c.request("POST", "/v1/frames", body=body, headers={"Content-Type": ctype} if ctype else {})
    r = c.getresponse()
    data = r.read()
    c.close()
    assert r.status in (400, 403, 413, 415)
    assert len(data) != frames.DOWNLINK_LEN or r.status != 200


def test_after_fuzz_gateway_still_acks(gw, session):
    assert _post(session, gw, uplink(counter=0x00060001))[0] == 200
