"""TLS contexts for the gateway's two sides: one place for the minimum version and the rules.

Client (to dispatch): verified against the system CAs, or only ``ca_file`` when given (a
private dispatch CA), with an optional client certificate. Server (the HTTP ingest, the
reference dispatch receiver): our certificate, optionally requiring client certificates.
TLS 1.2 is the floor on both sides.
"""

from __future__ import annotations

import ssl


def client_context(ca_file: str | None = None, client_cert: str | None = None,
                   client_key: str | None = None) -> ssl.SSLContext:
    """Verified TLS: the system CAs, or only ``ca_file`` when given; optional client cert."""
    ctx = ssl.create_default_context(cafile=ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key or None)
    return ctx


def server_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """TLS 1.2+ server context from PEM files; with ``client_ca``, client certificates signed
    by it are required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
