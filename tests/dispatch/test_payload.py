"""The dispatch body: schema-valid for every event kind, stable idempotency, bad input refused."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from panicgw.forward import payload as dp
from panicgw.forward.contract import SCHEMA_PATH, schema_errors
from panicgw.store import PRIO_ALARM, PRIO_EVENT, PRIO_OTHER, PRIO_TROUBLE

from .conftest import SITE, payload


def test_schema_is_valid_draft_2020_12() -> None:
    doc = json.loads(SCHEMA_PATH.read_text())
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(doc)


@pytest.mark.parametrize("event", sorted(dp.EVENTS))
def test_every_event_validates(event: str) -> None:
    body = payload(event)
    assert schema_errors(body) == []
    spec = dp.EVENTS[event]
    assert body["contact_id"]["code"] == spec.code
    assert body["contact_id"]["qualifier"] == spec.qualifier
    assert body["event"] == event
    json.dumps(body)  # JSON-ready


@pytest.mark.parametrize("event,display", [
    ("panic", "1122"), ("test", "1601"), ("tamper", "1137"), ("cancel", "1406"),
    ("supervision_lost", "1381"), ("supervision_restore", "3381"), ("low_battery", "1384"),
    ("low_battery_restore", "3384"), ("gateway_checkin", "1602"), ("gateway_trouble", "1330"),
    ("gateway_trouble_restore", "3330"),
])
def test_contact_id_codes(event: str, display: str) -> None:
    assert payload(event)["contact_id"]["display"] == display


def test_panic_fields() -> None:
    b = payload("panic", press_count=3, last_heard=1_714_560_042.5)
    assert b["device"]["id"] == "1234ABCD"
    assert b["site"]["lat"] == SITE["lat"] and b["site"]["lon"] == SITE["lon"]
    assert b["times"]["first_heard"] == "2024-05-01T10:40:00.000Z"
    assert b["times"]["last_heard"] == "2024-05-01T10:40:42.500Z"
    assert b["paths"] == [{"path": "lora", "rssi": -97.5, "snr": 6.25,
                           "at": "2024-05-01T10:40:00.000Z"}]
    assert b["press_count"] == 3 and b["category"] == "alarm" and b["test"] is False
    assert b["incident_id"] == "1234ABCD-00030001-panic"
    assert payload("panic", silent=False)["contact_id"]["code"] == 120
    assert payload("test")["test"] is True


def test_priorities_match_store() -> None:
    assert dp.priority_for("panic") == PRIO_ALARM
    assert {dp.priority_for(e) for e in ("test", "tamper", "cancel")} == {PRIO_EVENT}
    assert dp.priority_for("supervision_lost") == PRIO_TROUBLE
    assert dp.priority_for("gateway_trouble") == PRIO_TROUBLE
    assert dp.priority_for("gateway_checkin") == PRIO_OTHER


def test_idempotency_key_same_on_two_gateways() -> None:
    a = payload("panic", gateway_id="gw-north", at=1000.0)
    b = payload("panic", gateway_id="gw-south", at=1000.7,
                paths=[{"path": "wifi", "rssi": None, "snr": None, "at": 1000.7}])
    assert a["idempotency_key"] == b["idempotency_key"]
    assert a["incident_id"] == b["incident_id"]
    # a different frame, device or event is a different message
    assert payload("panic", counter=0x00030002)["idempotency_key"] != a["idempotency_key"]
    assert payload("panic", device_id=7)["idempotency_key"] != a["idempotency_key"]
    assert payload("cancel")["idempotency_key"] != a["idempotency_key"]
    # a repeat press: same incident, new message
    again = payload("panic", frame_counter=0x00030002, press_count=2)
    assert again["incident_id"] == a["incident_id"]
    assert again["idempotency_key"] != a["idempotency_key"]
    # gateway events are per gateway
    assert (payload("gateway_checkin", gateway_id="a")["idempotency_key"]
            != payload("gateway_checkin", gateway_id="b")["idempotency_key"])


@pytest.mark.parametrize("change,reason", [
    ({"event": "explode"}, "unknown_event"),
    ({"site": None}, "missing_device"),
    ({"site": {**SITE, "lat": 91.0}}, "bad_site_lat"),
    ({"site": {**SITE, "lon": float("nan")}}, "bad_site_lon"),
    ({"site": {**SITE, "kind": "bank"}}, "bad_site_kind"),
    ({"site": {**SITE, "name": " "}}, "bad_site_name"),
    ({"device": {"id": 1 << 32}}, "bad_device_id"),
    ({"device": {"id": "zz"}}, "bad_device_id"),
    ({"device": {"id": 5, "battery_mv": -1}}, "bad_battery_mv"),
    ({"paths": [{"path": "carrier-pigeon"}]}, "bad_path"),
    ({"paths": [{"path": "lora", "rssi": "loud"}]}, "bad_rssi"),
    ({"press_count": 0}, "bad_press_count"),
    ({"first_heard": -5}, "bad_time"),
    ({"code": 137}, "bad_contact_id"),
    ({"qualifier": 3}, "bad_contact_id"),
    ({"counter": -1}, "bad_counter"),
    ({"gateway_id": ""}, "bad_gateway_id"),
    ({"incident_id": ""}, "bad_incident_id"),
])
def test_bad_input_is_a_reasoned_error(change: dict, reason: str) -> None:
    args = dict(incident_id="x", event="panic", gateway_id="gw", first_heard=1.0, site=SITE,
                device={"id": 5}, paths=[], counter=1)
    args.update(change)
    with pytest.raises(dp.PayloadError) as e:
        dp.build_payload(**args)
    assert e.value.reason == reason


def test_schema_rejects_what_dispatch_must_not_accept() -> None:
    good = payload("panic")
    for mutate in (
        lambda b: b.pop("incident_id"),
        lambda b: b.__setitem__("extra", 1),
        lambda b: b["contact_id"].__setitem__("code", 137),  # alarm must be 120/122
        lambda b: b.__setitem__("device", None),  # button events need a device
        lambda b: b["times"].__setitem__("forwarded", "yesterday"),
        lambda b: b["device"].__setitem__("id", "1234abcd"),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        assert schema_errors(bad), bad


@given(
    event=st.sampled_from(sorted(dp.EVENTS)),
    device_id=st.integers(0, 0xFFFFFFFF),
    counter=st.integers(0, 0xFFFFFFFF),
    at=st.floats(0, 4_000_000_000, allow_nan=False),
    rssi=st.none() | st.floats(-150, 20, allow_nan=False),
    label=st.text(max_size=600),
    presses=st.integers(1, 10_000),
)
def test_any_valid_input_gives_a_schema_valid_body(event: str, device_id: int, counter: int,
                                                   at: float, rssi: float | None, label: str,
                                                   presses: int) -> None:
    dev = dp.EVENTS[event].needs_device
    body = dp.build_payload(
        incident_id="i", event=event, gateway_id="gw", first_heard=at,
        site=SITE if dev else None,
        device={"id": device_id, "label": label} if dev else None,
        paths=[{"path": "wifi", "rssi": rssi, "snr": None, "at": at}],
        press_count=presses, counter=counter,
    )
    assert schema_errors(body) == []
