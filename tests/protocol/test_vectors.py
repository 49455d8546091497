"""The vectors in tests/vectors/ hold in both directions on CPython (the MicroPython gate
runs the same files on the VM)."""

import json
from pathlib import Path

import pytest

from panicproto import airtime, frames, link, mac
from panicproto.errors import REASONS, ProtocolError

VEC = Path(__file__).resolve().parents[1] / "vectors"
KINDS = {v: k for k, v in frames.TYPE_NAMES.items()}
LINK_KINDS = {v: k for k, v in link.TYPE_NAMES.items()}


def load(name: str) -> list[dict]:
    return json.loads((VEC / f"{name}.json").read_text())


def ids(cases: list[dict]) -> list[str]:
    return [c.get("name", str(i)) for i, c in enumerate(cases)]


def test_enough_vectors_and_generator_is_current() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen", VEC / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    built = gen.build()
    assert sum(len(v) for v in built.values()) >= 30
    for section, cases in built.items():
        assert load(section) == json.loads(json.dumps(cases)), f"{section}.json is stale"


@pytest.mark.parametrize("case", load("uplink"), ids=ids(load("uplink")))
def test_uplink(case: dict) -> None:
    key, f = bytes.fromhex(case["key"]), case["fields"]
    up = frames.Uplink(KINDS[f["type"]], f["device_id"], f["counter"], f["attempt"],
                       f["low_battery"], f["tamper"], f["wifi"], f["battery_mv"])
    raw = frames.encode_uplink(key, up)
    assert raw.hex() == case["hex"]
    assert len(raw) == 19
    assert frames.decode_uplink(raw, key).fields() == f


@pytest.mark.parametrize("case", load("downlink"), ids=ids(load("downlink")))
def test_downlink(case: dict) -> None:
    key, f = bytes.fromhex(case["key"]), case["fields"]
    raw = frames.encode_downlink(key, frames.Downlink(KINDS[f["type"]], f["device_id"],
                                                      f["counter"], f["status"]))
    assert raw.hex() == case["hex"]
    assert len(raw) == 18
    assert frames.decode_downlink(raw, key).fields() == f


@pytest.mark.parametrize("case", load("link"), ids=ids(load("link")))
def test_link(case: dict) -> None:
    kind, payload = LINK_KINDS[case["kind"]], bytes.fromhex(case["payload"])
    wire = link.encode(kind, case["seq"], payload)
    assert wire.hex() == case["hex"]
    assert link.Decoder().feed(wire) == [link.Message(kind, case["seq"], payload)]


@pytest.mark.parametrize("case", load("invalid"), ids=ids(load("invalid")))
def test_invalid(case: dict) -> None:
    raw = bytes.fromhex(case["hex"])
    key = bytes.fromhex(case["key"]) if case["key"] else None
    assert case["reason"] in REASONS
    with pytest.raises(ProtocolError) as err:
        if case["decoder"] == "uplink":
            frames.decode_uplink(raw, key)
        elif case["decoder"] == "downlink":
            frames.decode_downlink(raw, key)
        else:
            link.decode(raw)
    assert err.value.reason == case["reason"]


def test_invalid_vectors_cover_every_reason_but_key() -> None:
    seen = {c["reason"] for c in load("invalid")}
    assert set(REASONS) - seen == {"bad_key"}


@pytest.mark.parametrize("case", load("airtime"))
def test_airtime(case: dict) -> None:
    assert airtime.time_on_air_ms(case["bytes"], case["sf"], case["bw_hz"]) == pytest.approx(
        case["ms"], abs=0.001)


@pytest.mark.parametrize("case", load("hmac_rfc4231"))
def test_rfc4231(case: dict) -> None:
    assert mac.hmac_sha256(bytes.fromhex(case["key"]), bytes.fromhex(case["data"])).hex() == (
        case["mac"])
