"""`panictool verify` passes on the button's signed ACK (contract C2): the console line
`PANIC-BUTTON ack: <kind> counter=<n> status=<1|2> via <path> rssi=<dBm|-> snr=<dB|-> sf=<n|->
down=<36 hex>` carries the 18-byte downlink as the button received it, and verify checks
its tag with the key read from the board's NVM, then grades the downlink's margin at the SF
it came on. The lines here are built from real `panicproto.frames.encode_downlink` output,
as the gateway makes it (gateway/panicgw computes every downlink with that function)."""

from __future__ import annotations

import pytest

from panicproto import frames
from panictool import verify

DEV = 0x5E21A9C4
KEY = bytes.fromhex("3f0c9a61d2b4e8710011223344556677")
COUNTER = frames.make_counter(3, 7)


def downlink(key: bytes = KEY, kind: int = frames.ACK, device_id: int = DEV,
             counter: int = COUNTER, status: int = frames.STORED) -> bytes:
    return frames.encode_downlink(key, frames.Downlink(kind, device_id, counter, status))


def ack_line(down: bytes, path: str = "lora", rssi: str = "-97", snr: str = "-3.5",
             sf: str = "9", status: int = 1, counter: int = COUNTER) -> str:
    return (f"PANIC-BUTTON ack: test counter={counter} status={status} via {path} "
            f"rssi={rssi} snr={snr} sf={sf} down={down.hex()}")


def graded(line: str, key: bytes | None = KEY) -> tuple[bool, verify.Result]:
    res = verify.Result()
    res.test = {"trigger": "usb", "counter": COUNTER, "ack": None}
    ok = verify.check_ack(res, verify.parse_ack(line), key, DEV, COUNTER, 30.0, "0.3.0")
    return ok, res


def by_name(res: verify.Result) -> dict[str, verify.Check]:
    return {c.name: c for c in res.checks}


def test_the_contract_line_parses():
    down = downlink()
    ack = verify.parse_ack(ack_line(down))
    assert ack is not None and not ack.problem
    assert (ack.kind, ack.counter, ack.status, ack.path) == ("test", COUNTER, 1, "lora")
    assert (ack.rssi, ack.snr, ack.sf, ack.down) == (-97, -3.5, 9, down)
    wifi = verify.parse_ack(ack_line(down, "wifi", "-", "-", "-"))
    assert (wifi.rssi, wifi.snr, wifi.sf, wifi.down) == (None, None, None, down)
    # the old line is still an ACK line (its prefix is kept), without the proof
    old = verify.parse_ack(f"PANIC-BUTTON ack: test counter={COUNTER} status=1 via lora")
    assert old is not None and old.down is None and old.rssi is None
    assert verify.parse_ack("PANIC-BUTTON press: test counter=5") is None
    assert verify.parse_ack(None) is None


def test_malformed_fields_are_named_not_crashed_on():
    ack = verify.parse_ack(ack_line(downlink())[:-2] + " rssi=loud")
    assert ack is not None and ack.down is None and ack.rssi is None
    assert "down=" in ack.problem and "rssi='loud'" in ack.problem
    line = ack_line(downlink())
    upper = verify.parse_ack(line.replace(downlink().hex(), downlink().hex().upper()))
    assert upper is not None and upper.down is None  # the contract says lowercase hex


def test_signed_ack_passes_and_grades_the_downlink_margin():
    ok, res = graded(ack_line(downlink()))
    assert ok and res.ok
    c = by_name(res)
    assert c["gateway ACK"].status == "PASS"
    assert "STORED via lora, signed with this button's key" in c["gateway ACK"].detail
    m = c["LoRa downlink margin"]
    assert m.status == "PASS" and "RSSI -97 dBm, SNR -3.5 dB at SF9: 9.0 dB above" in m.detail
    assert res.downlink == {"rssi": -97, "snr": -3.5, "sf": 9, "margin_db": 9.0}
    assert res.test["ack"]["signed"] is True and res.test["ack"]["down"] == downlink().hex()


@pytest.mark.parametrize(("snr", "sf", "status"), [
    ("-5.0", "9", "WARN"), ("-10.0", "9", "FAIL"), ("-7.0", "10", "PASS"), ("-", "9", "WARN")])
def test_downlink_margin_at_the_sf_it_came_on(snr, sf, status):
    ok, res = graded(ack_line(downlink(), snr=snr, sf=sf))
    assert ok  # the proof holds; the margin is graded on its own
    assert by_name(res)["LoRa downlink margin"].status == status


def test_delivered_and_wifi():
    ok, res = graded(ack_line(downlink(status=frames.DELIVERED), "wifi", "-", "-", "-",
                              status=2))
    assert ok and "DELIVERED via wifi" in by_name(res)["gateway ACK"].detail
    assert "LoRa downlink margin" not in by_name(res) and res.downlink is None


def test_an_ack_signed_with_another_key_fails_and_names_rekey():
    ok, res = graded(ack_line(downlink(key=bytes(16))))
    c = by_name(res)["gateway ACK"]
    assert not ok and c.status == "FAIL" and "another key" in c.detail
    assert "panictool rekey" in c.hint and "provision --force" not in c.hint
    assert KEY.hex() not in c.detail + c.hint


@pytest.mark.parametrize("down", [
    downlink(counter=COUNTER + 1),             # another frame's ACK
    downlink(device_id=DEV ^ 1),               # another device's
    downlink(kind=frames.RESYNC, status=0),    # not an ACK at all
])
def test_a_valid_downlink_for_something_else_fails(down):
    ok, res = graded(ack_line(down))
    assert not ok and by_name(res)["gateway ACK"].status == "FAIL"


def test_no_downlink_or_no_key_is_not_proof():
    ok, res = graded(f"PANIC-BUTTON ack: test counter={COUNTER} status=1 via lora")
    c = by_name(res)["gateway ACK"]
    assert not ok and c.status == "WARN" and "panictool flash" in c.hint
    ok, res = graded(ack_line(downlink()), key=None)
    assert not ok and by_name(res)["gateway ACK"].status == "WARN"
    ok, res = graded(None)  # type: ignore[arg-type]
    c = by_name(res)["gateway ACK"]
    assert not ok and c.status == "FAIL" and "no ACK" in c.detail
    assert "`panicgw devices import`" in c.hint


def test_wait_for_ack_skips_other_counters():
    lines = iter([ack_line(downlink(counter=COUNTER - 1), counter=COUNTER - 1),
                  "PANIC-BUTTON press: test counter=1", ack_line(downlink())])
    ack = verify.wait_for_ack(lambda _t: next(lines, None), COUNTER, 2.0)
    assert ack is not None and ack.counter == COUNTER and ack.down == downlink()
