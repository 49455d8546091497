"""The documented broker setup (deploy/mosquitto/: mosquitto.conf and panic.acl, as
docs/deployment.md shows them) started for real: TLS, a client certificate or a password per
gateway, and the ACL. Only ports and file paths are changed."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from panicgw.cluster.crypto import GroupKeys
from panicgw.cluster.messages import Codec, RxReport
from panicgw.cluster.sequence import SeqSource

from .conftest import GROUP, SECRET, Broker, Nodes, Plain, free_port, need_mosquitto, record, wait

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
ACL = ROOT / "deploy" / "mosquitto" / "panic.acl"


Issuer = tuple[x509.Name, ec.EllipticCurvePrivateKey]


def _cert(name: str, issuer: Issuer | None, out: Path, *, ca: bool = False,
          server: bool = False) -> Issuer:
    """A P-256 certificate (``out``.pem) and key (``out``.key), self-signed without issuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    iname, ikey = issuer or (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(iname)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False)
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                          False), critical=True)
    cert = b.sign(ikey, hashes.SHA256())
    out.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return subject, key


@dataclass
class Setup:
    dir: Path
    cert_port: int
    password_port: int
    passwords: dict[str, str]

    def ca(self) -> str:
        return str(self.dir / "ca.pem")

    def client(self, name: str) -> tuple[str, str]:
        return str(self.dir / f"{name}.pem"), str(self.dir / f"{name}.key")


@pytest.fixture
def documented_broker(tmp_path: Path) -> Iterator[Setup]:
    need_mosquitto()
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd not installed")
    d = tmp_path
    ca = _cert("panic test CA", None, d / "ca", ca=True)
    _cert("127.0.0.1", ca, d / "broker", server=True)
    for gw in ("gw-a", "gw-b"):
        _cert(gw, ca, d / gw)
    other = _cert("someone else's CA", None, d / "other-ca", ca=True)
    _cert("gw-a", other, d / "forged")
    passwords = {"gw-c": "c-secret-pw", "operator": "op-secret-pw"}
    pw = d / "passwd"
    for i, (user, word) in enumerate(passwords.items()):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(pw), user,
                        word], check=True, capture_output=True, timeout=30)
    cert_port, password_port = free_port(), free_port()
    conf = CONF.read_text()
    for old, new in (("/var/lib/mosquitto/", f"{d}/"),
                     ("/etc/mosquitto/certs/", f"{d}/"),
                     ("/etc/mosquitto/panic.acl", str(ACL)),
                     ("/etc/mosquitto/passwd", str(pw))):
        assert old in conf, old
        conf = conf.replace(old, new)
    conf = re.sub(r"^listener 8883$", f"listener {cert_port} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^listener 8884$", f"listener {password_port} 127.0.0.1", conf, flags=re.M)
    if os.geteuid() == 0:  # as root, mosquitto would switch to a user that cannot read d/
        conf += "\nuser root\n"
    b = Broker(d, cert_port, conf)
    b.start()
    assert wait(lambda: _open(password_port))
    yield Setup(d, cert_port, password_port, passwords)
    b.stop()


def _open(port: int) -> bool:
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def _connects(port: int, **kw: str) -> bool:
    """A CONNECT with these credentials is accepted (False: refused or TLS failed)."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"probe-{time.monotonic_ns()}")
    if kw.get("username"):
        c.username_pw_set(kw["username"], kw.get("password"))
    if kw.get("ca"):
        c.tls_set(ca_certs=kw["ca"], certfile=kw.get("cert"), keyfile=kw.get("key"))
    result: list[bool] = []
    c.on_connect = lambda cl, u, f, rc, p: result.append(not rc.is_failure)
    c.on_disconnect = lambda cl, u, f, rc, p: result.append(False)
    try:
        c.connect("127.0.0.1", port, 10)
    except (OSError, ssl.SSLError):
        return False
    c.loop_start()
    wait(lambda: bool(result), 5)
    c.disconnect()
    c.loop_stop()
    return bool(result) and result[0]


def test_documented_setup_carries_the_group_and_fences_each_gateway(
        documented_broker: Setup, nodes: Nodes) -> None:
    s = documented_broker
    cert_a, key_a = s.client("gw-a")
    cert_b, key_b = s.client("gw-b")
    a = nodes("gw-a", s.cert_port, tls=True, ca_file=s.ca(), client_cert=cert_a,
              client_key=key_a)
    b = nodes("gw-b", s.cert_port, tls=True, ca_file=s.ca(), client_cert=cert_b,
              client_key=key_b)
    c = nodes("gw-c", s.password_port, tls=True, ca_file=s.ca(), username="gw-c",
              password=s.passwords["gw-c"])
    assert wait(lambda: all(n.synced and len(n.members.live()) == 2 for n in (a, b, c))), \
        [n.counters() for n in (a, b, c)]
    operator = Plain(s.password_port, "#", username="operator",
                     password=s.passwords["operator"], ca_file=s.ca())

    rec = record()
    a.local_change(rec.device_id, rec)
    assert wait(lambda: b.replica.get(rec.device_id) is not None
                and c.replica.get(rec.device_id) is not None)

    # A gateway (here: someone holding gw-a's certificate and the group secret) speaking
    # for gw-b: the broker's ACL drops it. Its allowed message right after it gets through.
    rogue = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="rogue-gw-a")
    rogue.tls_set(ca_certs=s.ca(), certfile=cert_a, keyfile=key_a)
    rogue.connect("127.0.0.1", s.cert_port, 10)
    rogue.loop_start()
    later = SeqSource(clock=lambda: time.time() + 1000)  # above the real gw-a's numbers
    as_b = Codec(GroupKeys(SECRET, GROUP), "gw-b", seq=later)
    as_a = Codec(GroupKeys(SECRET, GROUP), "gw-a", seq=later)
    for codec, dev in ((as_b, 0x0000B0B0), (as_a, 0x0000A0A0)):
        out = codec.encode(RxReport(codec.gateway_id, dev, 1, 5, 0, "heartbeat", "lora",
                                    -90.0, 5.0, time.time()))
        rogue.publish(out.topic, out.payload, qos=1).wait_for_publish(5)
    assert wait(lambda: c.last_heard(0x0000A0A0) is not None)
    assert c.last_heard(0x0000B0B0) is None and b.last_heard(0x0000B0B0) is None
    rogue.disconnect()
    rogue.loop_stop()

    # the operator's account reads the group's traffic, never a key or an address
    assert wait(lambda: any("/registry/" in t for t, _, _ in operator.got))
    wire = b"".join(p for _, p, _ in operator.got)
    assert rec.key.hex().encode() not in wire and b"Merdeka" not in wire
    operator.close()


def test_documented_setup_refuses_strangers(documented_broker: Setup) -> None:
    s = documented_broker
    cert_a, key_a = s.client("gw-a")
    forged_cert, forged_key = s.client("forged")
    assert _connects(s.cert_port, ca=s.ca(), cert=cert_a, key=key_a)
    assert not _connects(s.cert_port, ca=s.ca())  # no client certificate
    assert not _connects(s.cert_port, ca=s.ca(), cert=forged_cert, key=forged_key)
    assert not _connects(s.cert_port)  # plain TCP on a TLS port
    assert _connects(s.password_port, ca=s.ca(), username="gw-c",
                     password=s.passwords["gw-c"])
    assert not _connects(s.password_port, ca=s.ca())  # anonymous
    assert not _connects(s.password_port, ca=s.ca(), username="gw-c", password="guess")
