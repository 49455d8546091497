"""`panicconsole cert selfsigned`: a TLS key and certificate for a first install or a demo."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

import typer

from panicconsole.common import fail

app = typer.Typer(help="TLS certificates.", no_args_is_help=True)


def make_selfsigned(out_dir: Path, hosts: list[str], days: int = 825) -> tuple[Path, Path]:
    """Write ``console.key`` (mode 0600) and ``console.crt`` for ``hosts`` into ``out_dir``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "panicconsole")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path, crt_path = out_dir / "console.key", out_dir / "console.crt"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, crt_path


@app.command("selfsigned")
def selfsigned(out_dir: Path = typer.Option(..., "--out-dir", "-o", file_okay=False,
                                            help="Where to write console.key and console.crt."),
               host: list[str] = typer.Option(["127.0.0.1", "localhost"], "--host",
                                              help="A name or IP address browsers and gateways "
                                                   "use to reach the console (repeat)."),
               days: int = typer.Option(825, "--days", min=1, max=3650),
               force: bool = typer.Option(False, "--force", help="Overwrite existing files.")
               ) -> None:
    """Make a self-signed certificate for [server] tls_cert/tls_key. Gateways trust it with
    [dispatch] ca_file = console.crt; browsers warn until it is installed on the operators'
    PCs. A certificate from the precinct's own CA is better when there is one."""
    if not force and ((out_dir / "console.key").exists() or (out_dir / "console.crt").exists()):
        fail(f"{out_dir} already has console.key/console.crt (use --force to replace them)")
    key, crt = make_selfsigned(out_dir, host, days)
    typer.echo(f"wrote {key} (mode 0600) and {crt} for {', '.join(host)}")
    typer.echo(f"console.toml: [server] tls_cert = \"{crt}\", tls_key = \"{key}\"")
    typer.echo(f"gateway.toml: [dispatch] ca_file = \"{crt}\"")
