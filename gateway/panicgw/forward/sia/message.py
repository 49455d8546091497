"""DC-09 message bodies (SIA-DCS and ADM-CID) from the events the JSON route sends.

Built from the stored dispatch body (``forward.payload.build_payload``), so both routes say
the same thing about one event: its Contact ID code and qualifier are the body's, the site's
coordinates go into xdata. What is ours to choose is written down here:

- SIA-DCS code letters for our Contact ID codes (:data:`SIA_DCS_CODES`): the SIA DC-03 code
  that names the same condition *for one zone*, so the centre sees which button;
- area 1 (ADM-CID group 01) for every event, the zone is the button's (0 for the gateway's
  own events);
- xdata ``X``/``Y`` longitude/latitude in signed decimal degrees (6 places, ~0.1 m), ``I``
  the button's id and label (or the gateway's id), ``S`` the site's name;
- the timestamp ``_HH:MM:SS,MM-DD-YYYY`` is UTC and stamped when the frame is built (a NAK
  from the receiver corrects our clock, so a resend carries a new one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from panicgw.forward.payload import EVENTS, PANIC_AUDIBLE

SIA_DCS = "SIA-DCS"
ADM_CID = "ADM-CID"
NULL = "NULL"
FORMATS = (SIA_DCS, ADM_CID)

AREA = 1
MAX_ZONE = 999  # ADM-CID's zone is 3 digits; SIA-DCS gets the same number
XDATA_FIELDS = ("X", "Y", "I", "S")
DEFAULT_XDATA = ("X", "Y", "I")
MAX_XDATA_TEXT = 64
_ACCOUNT = re.compile(r"[0-9A-F]{3,16}")
_TIME_FORMAT = "%H:%M:%S,%m-%d-%Y"
_TIMESTAMP = re.compile(r"_(\d\d:\d\d:\d\d,\d\d-\d\d-\d{4})")

# (Contact ID code, qualifier) -> SIA-DCS code. Each names the condition per zone or point.
SIA_DCS_CODES: dict[tuple[int, int], str] = {
    (122, 1): "HA",  # holdup alarm: silent alarm, user under duress
    (PANIC_AUDIBLE, 1): "PA",  # panic alarm: emergency assistance, manually activated
    (601, 1): "RX",  # manual communication test report
    (137, 1): "TA",  # tamper alarm: equipment enclosure opened
    (406, 1): "OC",  # cancel report
    (381, 1): "UY",  # untyped missing trouble: the button is logically missing
    (381, 3): "UJ",  # untyped trouble restore
    (384, 1): "XT",  # transmitter battery trouble (low battery in a wireless transmitter)
    (384, 3): "XR",  # transmitter battery restoral
    (602, 1): "RP",  # automatic communication test report (the gateway's check-in)
    (330, 1): "ET",  # expansion trouble: the gateway's LoRa bridge
    (330, 3): "ER",  # expansion restoral
    (380, 1): "UT",  # untyped zone trouble: a button the gateway can no longer accept
}


class MessageError(ValueError):
    """The event cannot become a DC-09 message; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Message:
    """One DC-09 message before framing: the header's account and the data part.

    ``data`` is what stands between ``[`` and ``]`` (``#1234|Nri1/HA001``; empty for a link
    test), ``xdata`` the extended-data fields that follow it as ``[<id><value>]``.
    """

    kind: str
    account: str
    data: str
    xdata: tuple[tuple[str, str], ...] = ()
    event: str = ""

    def content(self, stamp: str) -> str:
        """Everything after the header's ``[``: data, ``]``, xdata, timestamp."""
        return self.data + "]" + "".join(f"[{k}{v}]" for k, v in self.xdata) + stamp


def check_account(account: Any) -> str:
    """3-16 hex digits, returned upper-case (ADM-CID receivers read upper case only)."""
    text = account.upper() if isinstance(account, str) else ""
    if not _ACCOUNT.fullmatch(text):
        raise MessageError("bad_account", f"an account is 3-16 hex digits, got {account!r}")
    return text


def check_format(fmt: Any) -> str:
    text = fmt.upper() if isinstance(fmt, str) else ""
    if text not in FORMATS:
        raise MessageError("bad_format", f"format is one of {', '.join(FORMATS)}, got {fmt!r}")
    return text


def check_xdata_fields(fields: Iterable[Any]) -> tuple[str, ...]:
    out = tuple(fields)
    bad = [f for f in out if f not in XDATA_FIELDS]
    if bad or len(set(out)) != len(out):
        raise MessageError("bad_xdata", f"xdata fields are distinct letters of "
                           f"{', '.join(XDATA_FIELDS)}, got {list(out)!r}")
    return out


def _zone(zone: Any) -> int:
    if not isinstance(zone, int) or isinstance(zone, bool) or not 0 <= zone <= MAX_ZONE:
        raise MessageError("bad_zone", f"a zone is 0..{MAX_ZONE}, got {zone!r}")
    return zone


def format_time(t: float) -> str:
    """Unix seconds -> ``_HH:MM:SS,MM-DD-YYYY`` in UTC."""
    return datetime.fromtimestamp(t, UTC).strftime("_" + _TIME_FORMAT)


def parse_time(stamp: str) -> float | None:
    """``_HH:MM:SS,MM-DD-YYYY`` (UTC) -> Unix seconds; None when it is not one."""
    if not _TIMESTAMP.fullmatch(stamp):
        return None
    try:
        return datetime.strptime(stamp[1:], _TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def xdata_text(text: Any) -> str:
    """Free text made safe for an xdata field: printable ASCII without ``[ ] | ^``."""
    if not isinstance(text, str):
        return ""
    out = "".join(c if c.isascii() and c.isprintable() and c not in "[]|^" else "?"
                  for c in " ".join(text.split()))
    return out.strip()[:MAX_XDATA_TEXT]


def sia_dcs_data(account: str, code: str, zone: int, area: int = AREA) -> str:
    """``#<acct>|Nri<area>/<code><zone>``: a new event in one area, for one zone."""
    if not re.fullmatch(r"[A-Z]{2}", code or ""):
        raise MessageError("bad_sia_code", repr(code))
    return f"#{check_account(account)}|Nri{area}/{code}{_zone(zone):03d}"


def adm_cid_data(account: str, qualifier: int, code: int, zone: int, area: int = AREA) -> str:
    """``#<acct>|QEEE GG ZZZ``: Contact ID qualifier and event, group (area), zone."""
    if qualifier not in (1, 3, 6) or not 0 <= code <= 999 or not 0 <= area <= 99:
        raise MessageError("bad_contact_id", f"{qualifier}{code:03d} area {area}")
    return f"#{check_account(account)}|{qualifier}{code:03d} {area:02d} {_zone(zone):03d}"


def null_message(account: str) -> Message:
    """The link test: no event, only the header and a timestamp."""
    return Message(NULL, check_account(account), "", (), "link_test")


def _coordinate(v: Any, lo: float, hi: float) -> str | None:
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        return None
    return f"{float(v):.6f}" if lo <= v <= hi else None


def event_xdata(payload: Mapping[str, Any], fields: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """The xdata fields asked for that the event has (a gateway event has no site)."""
    site = payload.get("site") if isinstance(payload.get("site"), Mapping) else {}
    device = payload.get("device") if isinstance(payload.get("device"), Mapping) else {}
    out = []
    for f in check_xdata_fields(fields):
        if f == "X":
            value = _coordinate(site.get("lon"), -180, 180)
        elif f == "Y":
            value = _coordinate(site.get("lat"), -90, 90)
        elif f == "S":
            value = xdata_text(site.get("name")) or None
        elif device:
            value = xdata_text(f"{device.get('id', '')} {device.get('label') or ''}") or None
        else:
            value = xdata_text(f"gateway {payload.get('gateway_id', '')}") or None
        if value is not None:
            out.append((f, value))
    return tuple(out)


def from_payload(
    payload: Mapping[str, Any],
    *,
    account: str,
    zone: int,
    fmt: str = SIA_DCS,
    xdata: Iterable[str] = DEFAULT_XDATA,
    area: int = AREA,
) -> Message:
    """The DC-09 message for a stored dispatch body.

    ``account``: the site's account at this receiver; ``zone``: the button's zone there (0
    for the gateway's own events).
    """
    if not isinstance(payload, Mapping):
        raise MessageError("bad_payload", "must be a mapping")
    event = payload.get("event")
    if event not in EVENTS:
        raise MessageError("unknown_event", repr(event))
    cid = payload.get("contact_id")
    if not isinstance(cid, Mapping):
        raise MessageError("bad_contact_id", "missing")
    code, qualifier = cid.get("code"), cid.get("qualifier")
    key = (code, qualifier)
    if not (isinstance(code, int) and isinstance(qualifier, int)) or key not in SIA_DCS_CODES:
        raise MessageError("bad_contact_id", f"no SIA-DCS code for {qualifier}{code}")
    fmt = check_format(fmt)
    if fmt == SIA_DCS:
        data = sia_dcs_data(account, SIA_DCS_CODES[key], zone, area)
    else:
        data = adm_cid_data(account, qualifier, code, zone, area)
    return Message(fmt, check_account(account), data, event_xdata(payload, xdata), event)
