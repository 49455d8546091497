"""DC-09 message bodies from our events: one SIA-DCS code per Contact ID, account, zone,
xdata, timestamps."""

from __future__ import annotations

import pytest
from pysiaalarm.data.sia_codes import SIA_CODES

from panicgw.forward.payload import EVENTS, PANIC_AUDIBLE
from panicgw.forward.sia.message import (
    ADM_CID,
    SIA_DCS,
    SIA_DCS_CODES,
    MessageError,
    adm_cid_data,
    check_account,
    format_time,
    from_payload,
    null_message,
    parse_time,
    sia_dcs_data,
    xdata_text,
)

from .siakit import GATEWAY_EVENTS, payload


def test_every_event_has_a_sia_dcs_code_that_receivers_know() -> None:
    pairs = {(s.code, s.qualifier) for s in EVENTS.values()} | {(PANIC_AUDIBLE, 1)}
    assert pairs == set(SIA_DCS_CODES)
    for code in SIA_DCS_CODES.values():
        assert code in SIA_CODES  # else pysiaalarm (and receivers like it) answer DUH


def test_panic_sia_dcs() -> None:
    m = from_payload(payload("panic"), account="12ab", zone=5)
    assert (m.kind, m.account, m.event) == (SIA_DCS, "12AB", "panic")
    assert m.data == "#12AB|Nri1/HA005"
    assert m.xdata == (("X", "107.609800"), ("Y", "-6.914700"), ("I", "1234ABCD till"))
    assert m.content("_12:00:00,05-01-2024") == (
        "#12AB|Nri1/HA005][X107.609800][Y-6.914700][I1234ABCD till]_12:00:00,05-01-2024")


def test_audible_panic_and_restores() -> None:
    assert from_payload(payload("panic", silent=False), account="1234", zone=1).data == \
        "#1234|Nri1/PA001"
    assert from_payload(payload("supervision_restore"), account="1234", zone=2,
                        fmt=ADM_CID).data == "#1234|3381 01 002"


def test_adm_cid() -> None:
    m = from_payload(payload("low_battery"), account="1234", zone=17, fmt="adm-cid", xdata=["Y"])
    assert (m.kind, m.data, m.xdata) == (ADM_CID, "#1234|1384 01 017", (("Y", "-6.914700"),))


@pytest.mark.parametrize("event", GATEWAY_EVENTS)
def test_gateway_events_have_no_site(event: str) -> None:
    m = from_payload(payload(event), account="1234", zone=0, xdata=["X", "Y", "I", "S"])
    assert m.xdata == (("I", "gateway gw-1"),)


def test_site_name_field() -> None:
    m = from_payload(payload("tamper"), account="1234", zone=3, xdata=["S"])
    assert m.xdata == (("S", "Toko Sinar Jaya"),) and m.data == "#1234|Nri1/TA003"


def test_xdata_text_is_made_safe() -> None:
    assert xdata_text("till ]][[|^ kasir\u00e9\n\tx") == "till ?????? kasir? x"
    assert len(xdata_text("x" * 500)) == 64
    assert xdata_text(None) == ""


@pytest.mark.parametrize(("kw", "reason"), [
    ({"account": "12"}, "bad_account"),
    ({"account": "12345678901234567"}, "bad_account"),
    ({"account": "12G4"}, "bad_account"),
    ({"zone": 1000}, "bad_zone"),
    ({"zone": -1}, "bad_zone"),
    ({"fmt": "CID"}, "bad_format"),
    ({"xdata": ["Q"]}, "bad_xdata"),
    ({"xdata": ["X", "X"]}, "bad_xdata"),
])
def test_bad_arguments(kw: dict, reason: str) -> None:
    args = {"account": "1234", "zone": 1} | kw
    with pytest.raises(MessageError) as e:
        from_payload(payload("panic"), **args)
    assert e.value.reason == reason


def test_bad_payloads() -> None:
    for bad in ({}, {"event": "party"}, {"event": "panic"},
                {"event": "panic", "contact_id": {"code": [1], "qualifier": 1}},
                {"event": "panic", "contact_id": {"code": 999, "qualifier": 1}}):
        with pytest.raises(MessageError):
            from_payload(bad, account="1234", zone=1)


def test_low_level_builders() -> None:
    assert sia_dcs_data("abc", "RP", 0) == "#ABC|Nri1/RP000"
    assert adm_cid_data("abc", 1, 602, 0) == "#ABC|1602 01 000"
    with pytest.raises(MessageError):
        sia_dcs_data("abc", "R", 0)
    with pytest.raises(MessageError):
        adm_cid_data("abc", 2, 602, 0)
    assert null_message("1234").content("_12:00:00,05-01-2024") == "]_12:00:00,05-01-2024"
    assert check_account("00ff") == "00FF"


def test_time_round_trip() -> None:
    assert format_time(1_714_564_800.9) == "_12:00:00,05-01-2024"
    assert parse_time("_12:00:00,05-01-2024") == 1_714_564_800.0
    for bad in ("12:00:00,05-01-2024", "_25:00:00,05-01-2024", "_12:00:00,13-01-2024", ""):
        assert parse_time(bad) is None
