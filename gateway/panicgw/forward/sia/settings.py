"""One ``[[sia]]`` table of the gateway's config, checked key by key (docs/sia.md section 4).

Like every other section: each key has a default and a check, an unknown key is an error
with the closest known one suggested, and the error names the table and the key and says
how to fix it. The encryption key's value is never echoed.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from panicgw.forward.sia.crypto import KEY_FORMATS, SiaKeyError, parse_key
from panicgw.forward.sia.frame import MAX_ID
from panicgw.forward.sia.message import (
    DEFAULT_XDATA,
    FORMATS,
    SIA_DCS,
    MessageError,
    check_account,
    check_format,
    check_xdata_fields,
)

PROTOCOLS = ("tcp", "udp")


class SiaConfigError(ValueError):
    """A ``[[sia]]`` table is wrong; the message names the table, the key and the fix."""


@dataclass(frozen=True)
class Endpoint:
    """One receiver address."""

    host: str
    port: int
    protocol: str = "tcp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.protocol}://{host}:{self.port}"


@dataclass(frozen=True)
class ReceiverSettings:
    """A centre's receiver: where, which numbers, which key, how often to test the link."""

    name: str
    primary: Endpoint
    account: str  # the gateway's default account (its own events, link tests)
    backup: Endpoint | None = None
    receiver: int = 0
    line: int = 0
    key: bytes | None = field(default=None, repr=False)
    format: str = SIA_DCS
    xdata: tuple[str, ...] = DEFAULT_XDATA
    link_test_s: float = 60.0  # 0: no link tests
    ack_timeout_s: float = 10.0
    tries: int = 2  # sends per address per delivery, all under one sequence number

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return (self.primary,) if self.backup is None else (self.primary, self.backup)

    @property
    def encrypted(self) -> bool:
        return self.key is not None


Check = Callable[[Any], str | None]


def _int(lo: int, hi: int, hex_ok: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            return (f"must be an integer {lo}..{hi}" +
                    (f" (0x{hi:X}: 6 hex digits on the wire)" if hex_ok else ""))
        return None
    return check


def _num(lo: float, hi: float, zero_ok: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if (not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v)
                or not (lo <= v <= hi or zero_ok and v == 0)):
            return f"must be a number {lo:g}..{hi:g}" + (" or 0 (off)" if zero_ok else "")
        return None
    return check


def _str(empty_ok: bool = True) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or (not empty_ok and not v.strip()):
            return "must be a non-empty string" if not empty_ok else "must be a string"
        return None
    return check


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or v.lower() not in [c.lower() for c in choices]:
            return f"must be one of {', '.join(repr(c) for c in choices)}"
        return None
    return check


def _account(v: Any) -> str | None:
    try:
        check_account(v)
    except MessageError:
        return ("must be the account the centre gave this gateway: 3-16 hex digits "
                "(0-9, A-F), as a string: account = \"1234\"")
    return None


def _xdata(v: Any) -> str | None:
    try:
        if not isinstance(v, list):
            raise MessageError("bad_xdata")
        check_xdata_fields(v)
    except MessageError:
        return ('must be a list of distinct letters of "X" (longitude), "Y" (latitude), '
                '"I" (button id and label), "S" (site name), e.g. ["X", "Y", "I"]')
    return None


# key -> (default, check); a default of None means the key is required.
KEYS: dict[str, tuple[Any, Check]] = {
    "name": ("", _str()),
    "host": (None, _str(empty_ok=False)),
    "port": (None, _int(1, 65535)),
    "protocol": ("tcp", _one_of(*PROTOCOLS)),
    "receiver": (0, _int(0, MAX_ID, hex_ok=True)),
    "line": (0, _int(0, MAX_ID, hex_ok=True)),
    "account": (None, _account),
    "key": ("", _str()),
    "key_format": ("hex", _one_of(*KEY_FORMATS)),
    "format": (SIA_DCS, _one_of(*FORMATS)),
    "xdata": (list(DEFAULT_XDATA), _xdata),
    "link_test_s": (60.0, _num(10, 86400, zero_ok=True)),
    "ack_timeout_s": (10.0, _num(1, 120)),
    "tries": (2, _int(1, 10)),
    "backup_host": ("", _str()),
    "backup_port": (0, _int(0, 65535)),
}
SECRET_KEYS = ("key",)


def from_table(table: Mapping[str, Any], where: str = "[[sia]]") -> ReceiverSettings:
    """Check one ``[[sia]]`` table (as tomllib parsed it) and build its settings.

    ``where`` names the table in errors, e.g. ``"panicgw.toml: [[sia]] #2"``.
    """
    if not isinstance(table, Mapping):
        raise SiaConfigError(f"{where} must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        spec = KEYS.get(key)
        if spec is None:
            close = difflib.get_close_matches(str(key), list(KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SiaConfigError(f"{where} unknown key {key!r}{hint}")
        err = spec[1](value)
        if err:
            shown = "(hidden)" if key in SECRET_KEYS else repr(value)
            raise SiaConfigError(f"{where} {key} {err}, got {shown}")
        values[key] = value
    for key, (default, _) in KEYS.items():
        if key not in values:
            if default is None:
                raise SiaConfigError(f"{where} {key} is required: {_REQUIRED[key]}")
            values[key] = default
    key_bytes = None
    if values["key"]:
        try:
            key_bytes = parse_key(values["key"], values["key_format"].lower())
        except SiaKeyError as e:
            raise SiaConfigError(f"{where} key: {e} (the value is not shown)") from None
    protocol = values["protocol"].lower()
    primary = Endpoint(values["host"].strip(), values["port"], protocol)
    backup = None
    if values["backup_host"].strip():
        backup = Endpoint(values["backup_host"].strip(), values["backup_port"] or values["port"],
                          protocol)
    elif values["backup_port"]:
        raise SiaConfigError(f"{where} backup_port is set without backup_host: set "
                             "backup_host to the centre's backup receiver, or remove backup_port")
    return ReceiverSettings(
        name=values["name"].strip() or f"{primary.host}:{primary.port}",
        primary=primary,
        backup=backup,
        receiver=values["receiver"],
        line=values["line"],
        account=check_account(values["account"]),
        key=key_bytes,
        format=check_format(values["format"]),
        xdata=check_xdata_fields(values["xdata"]),
        link_test_s=float(values["link_test_s"]),
        ack_timeout_s=float(values["ack_timeout_s"]),
        tries=values["tries"],
    )


_REQUIRED = {
    "host": "the centre's receiver, e.g. host = \"receiver.centre.example\"",
    "port": "the receiver's DC-09 port, e.g. port = 12000 (the centre says which)",
    "account": "the account number the centre gave this gateway, e.g. account = \"1234\"",
}
