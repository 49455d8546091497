"""`panictool verify`'s grading branches with realistic inputs: link margin against the SX127x
floor of the button's configured SF (docs/installing.md: 8 dB or more passes, 3-8 dB warns,
less fails), the boot report against the registry (firmware version, device id, key
fingerprint), and the serial-port auto-detection every panictool command uses."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo
from typer.testing import CliRunner

from panicbutton import FIRMWARE_VERSION, report, settings
from panicgw import ports
from panicgw.registry import DeviceRecord, SiteRecord
from panicgw.store import Store
from panicproto import frames
from panictool import identity, transport_serial, verify
from panictool.cli import app
from panictool.transport import TransportError

DEV = 0x5E21A9C4
KEY = bytes.fromhex("3f0c9a61d2b4e8710011223344556677")
SITE = SiteRecord("Toko Maju", "shop", "Jl. Merdeka 12, Bandung", -6.9147, 107.6098,
                  "Ibu Sari", "+62 812 5555 0101")
COUNTER = frames.make_counter(2, 1)


def record(firmware: str | None = FIRMWARE_VERSION, key: bytes = KEY) -> DeviceRecord:
    return DeviceRecord(device_id=DEV, key=key, site=SITE, label="counter", paths=["lora"],
                        supervision_s=3600, firmware=firmware)


def boot_report(sf: int = 9, region: str = "AS923-2", **over: Any) -> dict[str, Any]:
    """The button's boot report as the firmware prints it, read back by the tool's parser."""
    s = settings.parse({"PB_REGION": region, "PB_SF": sf})
    rep: dict[str, Any] = {
        "firmware": FIRMWARE_VERSION, "board": "feather_rp2040_rfm95", "device_id": DEV,
        "epoch": 2, "radio": "ok", "wifi": "absent", "paths": ["lora"], "remote_test": None,
        "settings": s.public(), "cold_boot": True, "wake": None, "battery_mv": 3980,
        "tamper": False, "next_counter": COUNTER}
    rep.update(over)
    parsed = report.parse("soft reboot\r\n" + report.line(rep) + "\r\n")
    assert parsed is not None
    return parsed


def by_name(res: verify.Result) -> dict[str, verify.Check]:
    return {c.name: c for c in res.checks}


# -- link margin -------------------------------------------------------------------------------


def test_margin_is_snr_above_the_sx127x_floor_of_the_sf():
    # docs/installing.md's example line: SNR -3.0 dB at SF9 is 9.5 dB above the SF9 floor
    assert verify.link_margin(-3.0, 9) == 9.5
    # the floors from SF7 -7.5 dB to SF12 -20 dB, 2.5 dB per SF step
    assert [verify.link_margin(0.0, sf) for sf in range(7, 13)] == [
        7.5, 10.0, 12.5, 15.0, 17.5, 20.0]
    assert verify.link_margin(None, 9) is None  # a Wi-Fi copy has no SNR
    assert verify.link_margin(-3.0, 6) is None  # no floor known for it


def gateway_db(tmp_path: Path, copies: list[tuple[str, float | None, float | None, bool]]
               ) -> Path:
    """A real gateway DB holding the button's TEST and the copies it heard."""
    db = tmp_path / "gateway.db"
    s = Store(db)
    try:
        s.upsert_device(record())
        frame = frames.encode_uplink(KEY, frames.Uplink(frames.TEST, DEV, COUNTER,
                                                        battery_mv=3980))
        now = time.time()
        with s.transaction():
            eid = s.insert_event(DEV, COUNTER, "test", None, now, 0, 0, 3980, frame)
            for i, (path, rssi, snr, dup) in enumerate(copies):
                s.add_reception(eid, path, rssi, snr, now + i * 0.1, dup)
    finally:
        s.close()
    return db


def grade(tmp_path: Path, rep: dict[str, Any],
          copies: list[tuple[str, float | None, float | None, bool]]) -> verify.Result:
    """check_heard as `panictool verify` calls it: SF from the boot report's settings."""
    res = verify.Result()
    sf = int(rep["settings"]["sf"])
    db = gateway_db(tmp_path, copies)
    verify.check_heard(res, verify.db_source(db), f"the gateway DB {db}", DEV, COUNTER,
                       list(rep["paths"]), sf, 5.0)
    return res


@pytest.mark.parametrize(("sf", "snr", "status", "margin"), [
    (9, -4.5, "PASS", 8.0),    # exactly MARGIN_GOOD_DB above -12.5
    (9, -5.0, "WARN", 7.5),
    (9, -9.5, "WARN", 3.0),    # exactly MARGIN_MIN_DB
    (9, -10.0, "FAIL", 2.5),
    (10, -7.0, "PASS", 8.0),   # SF10 floor -15.0
    (10, -7.5, "WARN", 7.5),
    (10, -12.5, "FAIL", 2.5),
    (12, -14.0, "WARN", 6.0),  # SF12 floor -20.0 (EU868: AS923 dwell limits stop at SF10)
])
def test_margin_thresholds_for_the_configured_sf(tmp_path, sf, snr, status, margin):
    rep = boot_report(sf=sf, region="EU868" if sf > 10 else "AS923-2")
    assert rep["settings"]["sf"] == sf
    res = grade(tmp_path, rep, [("lora", -118.0, snr, False)])
    c = by_name(res)
    assert c["gateway heard TEST"].status == "PASS"
    lm = c["LoRa uplink margin"]
    assert lm.status == status, lm
    assert res.heard[0]["margin_db"] == margin
    assert f"RSSI -118 dBm, SNR {snr:.1f} dB at SF{sf}" in lm.detail  # as the ACK line reads
    assert f"{margin} dB" in lm.detail
    if status == "WARN":
        assert "PB_SF" in lm.hint and "move the button" in lm.hint
    elif status == "FAIL":
        assert "external antenna" in lm.hint
        assert not res.ok
    else:
        assert f"above the SF{sf} floor" in lm.detail and res.ok


def test_same_snr_grades_differently_at_another_sf(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    at9 = grade(tmp_path / "a", boot_report(sf=9), [("lora", -110.0, -6.0, False)])
    at10 = grade(tmp_path / "b", boot_report(sf=10), [("lora", -110.0, -6.0, False)])
    assert by_name(at9)["LoRa uplink margin"].status == "WARN"  # 6.5 dB above -12.5
    assert by_name(at10)["LoRa uplink margin"].status == "PASS"  # 9.0 dB above -15.0
    assert (at9.heard[0]["margin_db"], at10.heard[0]["margin_db"]) == (6.5, 9.0)


def test_duplicate_and_wifi_copies_are_not_graded(tmp_path):
    rep = boot_report(paths=["lora", "wifi"], wifi="ok")
    res = grade(tmp_path, rep, [("lora", -100.0, 4.0, False), ("lora", -125.0, -14.0, True),
                                ("wifi", None, None, False)])
    margins = [c for c in res.checks if c.name == "LoRa uplink margin"]
    assert [(c.status, c.detail.split(": ")[-1]) for c in margins] == [
        ("PASS", "16.5 dB above the SF9 floor")]
    assert [h["margin_db"] for h in res.heard] == [16.5, -1.5, None]
    assert by_name(res)["gateway heard TEST"].detail == "stored as test via lora, wifi"


def test_lora_copy_without_snr_warns(tmp_path):
    res = grade(tmp_path, boot_report(), [("lora", -104.0, None, False)])
    c = by_name(res)["LoRa uplink margin"]
    assert c.status == "WARN" and "no SNR reported" in c.detail


# -- boot report against the registry ------------------------------------------------------------


def test_matching_board_passes():
    res = verify.Result()
    verify.check_report(res, boot_report(), record(), identity.fingerprint(KEY),
                        identity.fingerprint)
    assert {c.name: c.status for c in res.checks} == {
        "boot report": "PASS", "firmware version": "PASS", "key fingerprint": "PASS"}
    assert res.report is not None and res.report["device_id"] == DEV


def test_firmware_version_mismatch_warns_and_says_flash():
    res = verify.Result()
    verify.check_report(res, boot_report(firmware="0.1.0"), record(firmware=FIRMWARE_VERSION),
                        identity.fingerprint(KEY), identity.fingerprint)
    c = by_name(res)["firmware version"]
    assert c.status == "WARN"
    assert c.detail == f"board runs 0.1.0, registry says {FIRMWARE_VERSION}"
    assert "panictool flash" in c.hint
    assert res.ok  # a warning: exit 0 (docs/installing.md: warnings allowed)
    # a registry without a firmware version has nothing to compare
    res = verify.Result()
    verify.check_report(res, boot_report(firmware="0.1.0"), record(firmware=None),
                        identity.fingerprint(KEY), identity.fingerprint)
    assert by_name(res)["firmware version"].status == "PASS"


def test_wrong_key_fingerprint_fails_naming_both():
    registry_key = bytes(reversed(KEY))  # the gateway has another key for this id
    board_fp, want = identity.fingerprint(KEY), identity.fingerprint(registry_key)
    assert board_fp != want
    res = verify.Result()
    verify.check_report(res, boot_report(), record(key=registry_key), board_fp,
                        identity.fingerprint)
    c = by_name(res)["key fingerprint"]
    assert c.status == "FAIL"
    assert c.detail == f"board {board_fp} != registry {want}"
    # the fix keeps the id (a rekey), never `provision --force` (a new id)
    assert "gateway will reject this button" in c.hint and "panictool rekey" in c.hint
    assert "--force" not in c.hint
    assert KEY.hex() not in c.detail + c.hint and registry_key.hex() not in c.detail + c.hint
    assert not res.ok


def test_fingerprint_not_read_warns():
    res = verify.Result()
    verify.check_report(res, boot_report(), record(), None, identity.fingerprint)
    c = by_name(res)["key fingerprint"]
    assert c.status == "WARN" and "not read from the board" in c.detail


def test_other_device_id_fails_with_both_ids_in_hex():
    res = verify.Result()
    verify.check_report(res, boot_report(device_id=0x0BADF00D), record(),
                        identity.fingerprint(KEY), identity.fingerprint)
    c = by_name(res)["device id"]
    assert c.status == "FAIL"
    assert c.detail == "board says 0x0BADF00D, registry 0x5E21A9C4"
    assert "provision the board again" in c.hint


def test_radio_failure_is_a_warning_while_wifi_carries():
    res = verify.Result()
    rep = boot_report(radio="fail: Failed to find rfm9x with expected version", wifi="ok",
                      paths=["wifi"])
    verify.check_report(res, rep, record(), identity.fingerprint(KEY), identity.fingerprint)
    c = by_name(res)["radio"]
    assert c.status == "WARN" and "Failed to find rfm9x" in c.detail
    assert "antenna/wiring" in c.hint
    assert "wifi" not in by_name(res)  # "ok" is not graded


def test_configuration_error_fails_the_boot_report():
    res = verify.Result()
    rep = boot_report(radio="fail: Failed to find rfm9x", paths=[],
                      error={"code": 4, "name": "radio", "message": "LoRa radio not found"})
    verify.check_report(res, rep, record(), identity.fingerprint(KEY), identity.fingerprint)
    c = by_name(res)
    assert c["boot report"].status == "FAIL"
    assert "error 4 radio: LoRa radio not found" in c["boot report"].detail
    assert c["radio"].status == "FAIL"  # no path left
    assert not res.ok


def test_no_boot_report_fails():
    res = verify.Result()
    verify.check_report(res, None, record(), None, identity.fingerprint)
    assert [(c.name, c.status) for c in res.checks] == [("boot report", "FAIL")]
    assert "panictool flash" in res.checks[0].hint


# -- serial port auto-detection ------------------------------------------------------------------


def usb_port(device: str, vid: int | None, pid: int | None = None, serial: str | None = None,
             location: str | None = None, product: str | None = None,
             interface: str | None = None) -> ListPortInfo:
    """A port as pyserial's Linux enumeration reports it."""
    p = ListPortInfo(device, skip_link_detection=True)
    if vid is None:
        return p  # a built-in UART: no USB data
    p.vid, p.pid, p.serial_number, p.location = vid, pid, serial, location
    p.manufacturer, p.product, p.interface = "maker", product, interface
    p.apply_usb_info()
    return p


OTHERS = [
    usb_port("/dev/ttyS0", None),
    usb_port("/dev/ttyACM0", 0x2341, 0x0043, "95530343", "1-1.1:1.0", "Arduino Uno"),
    usb_port("/dev/ttyUSB0", 0x0403, 0x6001, "A50285BI", "1-1.3:1.0", "FT232R USB UART"),
    usb_port("/dev/ttyUSB1", 0x10C4, 0xEA60, "0001", "1-2:1.0", "CP2102 USB to UART"),
]
BUTTON = usb_port("/dev/ttyACM1", 0x239A, 0x80F2, "DF6050788B3D2A2F", "1-1.4:1.0",
                  "Feather RP2040 RFM", "CircuitPython CDC control")
# A second board (the gateway's bridge): data port enumerated before its console.
BRIDGE = [usb_port("/dev/ttyACM2", 0x239A, 0x80F2, "E6614C311B4A6E2B", "1-1.2:1.2",
                   "Feather RP2040 RFM", "CircuitPython CDC2 data"),
          usb_port("/dev/ttyACM3", 0x239A, 0x80F2, "E6614C311B4A6E2B", "1-1.2:1.0",
                   "Feather RP2040 RFM", "CircuitPython CDC control")]


def plug(monkeypatch: pytest.MonkeyPatch, ports: list[ListPortInfo]) -> None:
    monkeypatch.setattr(list_ports, "comports", lambda include_links=False: list(ports))


def test_picks_the_adafruit_board_among_other_serial_devices(monkeypatch):
    plug(monkeypatch, OTHERS + [BUTTON])
    assert BUTTON.description == "Feather RP2040 RFM - CircuitPython CDC control"
    assert ports.usb_ports() == ["/dev/ttyACM1"]
    assert transport_serial.auto_port() == "/dev/ttyACM1"
    assert ports.usb_ports(0x0403) == ["/dev/ttyUSB0"]


def test_one_board_with_two_ports_gives_its_console(monkeypatch):
    plug(monkeypatch, OTHERS + BRIDGE)
    assert ports.usb_ports() == ["/dev/ttyACM3", "/dev/ttyACM2"]
    assert transport_serial.auto_port() == "/dev/ttyACM3"
    for p in BRIDGE:  # an OS that reports no serial number: the USB path groups them
        p.serial_number = None
    try:
        assert transport_serial.auto_port() == "/dev/ttyACM3"
    finally:
        for p in BRIDGE:
            p.serial_number = "E6614C311B4A6E2B"


def test_no_board_is_a_serial_error_that_says_what_to_do(monkeypatch):
    plug(monkeypatch, OTHERS)
    assert ports.usb_ports() == []
    with pytest.raises(TransportError) as e:
        transport_serial.auto_port()
    assert "no CircuitPython board found on USB (vendor 0x239A)" in str(e.value)
    assert "data cable" in e.value.hint and "--port" in e.value.hint


def test_several_boards_are_refused_not_guessed(monkeypatch):
    plug(monkeypatch, OTHERS + [BUTTON] + BRIDGE)
    with pytest.raises(TransportError) as e:
        transport_serial.auto_port()
    assert "2 CircuitPython boards found on USB: /dev/ttyACM1, /dev/ttyACM3" in str(e.value)
    assert "--port" in e.value.hint and "unplug the others" in e.value.hint


@pytest.mark.parametrize(("ports", "error"), [
    (OTHERS, "no CircuitPython board found"),
    (OTHERS + [BUTTON] + BRIDGE, "2 CircuitPython boards found"),
])
def test_verify_without_port_exits_4_with_the_hint(monkeypatch, tmp_path, ports, error):
    plug(monkeypatch, ports)
    r = CliRunner().invoke(app, ["verify", "--json"],
                           env={"PANICGW_CONFIG": str(tmp_path / "none.toml")})
    assert r.exit_code == 4, r.output  # docs/installing.md: 4 serial problem: no port
    doc = json.loads(r.output)
    assert doc["ok"] is False and doc["exit_code"] == 4
    assert error in doc["error"] and "--port" in doc["hint"]


def test_a_crashing_code_py_ends_the_boot_wait_with_its_error():
    """CircuitPython prints a traceback and stops; verify says what broke at once instead
    of waiting out --boot-timeout for a report that cannot come."""
    lines = iter(["soft reboot", "", "Auto-reload is off.", "code.py output:",
                  "Traceback (most recent call last):", '  File "code.py", line 3, in <module>',
                  '  File "hal_board.py", line 11, in <module>',
                  "ImportError: no module named 'alarm'", "", "Code done running."])
    crash: list[str] = []

    def next_line(_timeout: float) -> str:
        line = next(lines, None)
        assert line is not None, "kept waiting after code.py had stopped"
        return line

    rep = verify.read_boot_report(next_line, 30.0, crash)
    assert rep is None and crash == ["ImportError: no module named 'alarm'"]
    res = verify.Result()
    verify.check_report(res, rep, record(), None, identity.fingerprint, crash[0])
    c = res.checks[0]
    assert c.status == "FAIL" and "ImportError: no module named 'alarm'" in c.detail
    assert "panictool flash" in c.hint
