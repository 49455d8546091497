"""`panictool verify` triggering the TEST over USB: when a board can take the request, what
is written, and the fallback to a manual press (with the reason) when it cannot."""

from __future__ import annotations

import json
import threading
import time

import pytest
from mpboard import MpBoard
from test_tool_sim_e2e import start_gateway, stop
from typer.testing import CliRunner

from panicbutton import FIRMWARE_VERSION, nvmstore
from panicgw import access, registry
from panicgw.store import Store
from panicsim import Air, SimButton, SimClock
from panictool import identity, testrequest
from panictool.cli import app
from panictool.transport_serial import SerialTransport

runner = CliRunner()


def test_versions():
    assert testrequest.parse_version("0.2.0") == (0, 2, 0)
    assert testrequest.parse_version("0.10.1-dev") == (0, 10, 1)
    assert testrequest.parse_version("v1") is None and testrequest.parse_version(None) is None
    assert testrequest.supported(FIRMWARE_VERSION)
    assert not testrequest.supported("0.1.0") and not testrequest.supported("garbage")


def test_unavailable_reasons_then_request_on_a_micropython_board(tmp_path):
    (tmp_path / "a").mkdir()
    small = MpBoard(tmp_path / "a", nvm_size=nvmstore.NVM_REMOTE_TEST_MIN - 1).start()
    try:
        with SerialTransport(small.port) as t:
            why = testrequest.unavailable(t)
    finally:
        small.stop()
    assert why is not None and f"{nvmstore.NVM_REMOTE_TEST_MIN - 1} bytes of NVM" in why

    (tmp_path / "b").mkdir()
    board = MpBoard(tmp_path / "b").start()
    try:
        with SerialTransport(board.port) as t:
            assert "no button firmware" in testrequest.unavailable(t)
            pkg = board.fs / "panicbutton"  # the board's root is on its import path
            pkg.mkdir()
            (pkg / "__init__.py").write_text('FIRMWARE_VERSION = "0.1.0"\n')
            assert "firmware 0.1.0 cannot take a TEST request" in testrequest.unavailable(t)
        with SerialTransport(board.port) as t:  # a fresh REPL session re-imports it
            (pkg / "__init__.py").write_text(f'FIRMWARE_VERSION = "{FIRMWARE_VERSION}"\n')
            assert t.exec("import sys\nsys.modules.pop('panicbutton', None)\n") == ""
            assert testrequest.unavailable(t) is None
            nonce = testrequest.request(t)
    finally:
        board.stop()
    assert 1 <= nonce <= 0xFFFF
    assert nvmstore.read_remote_test(bytearray(board.nvm())) == nonce


def test_press_and_no_test_contradict(tmp_path):
    r = runner.invoke(app, ["verify", "--port", "/nonexistent", "--gateway-db",
                            str(tmp_path / "x.db"), "--press", "--no-test"])
    assert r.exit_code == 2 and "contradict" in r.output


@pytest.fixture
def wifi_gateway(tmp_path):
    device_id, key = identity.new_identity()
    rec = registry.DeviceRecord(device_id, key, registry.SiteRecord(
        "Warung Sari", "shop", "Jl. Kaliurang 5", -7.7, 110.4), "till", ["wifi"], 3600,
        FIRMWARE_VERSION)
    Store(tmp_path / "gw" / "gateway.db").close()  # C3: only the gateway creates it
    access.register(tmp_path / "gw" / "gateway.db", rec)
    proc, db, port = start_gateway(tmp_path)
    try:
        yield rec, db, f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def _button(rec, url: str, tmp_path, nvm_size: int) -> SimButton:
    return SimButton(rec.device_id, rec.key, air=Air(SimClock()), board="feather_esp32s3",
                     nvm_size=nvm_size, settings={"PB_WIFI_SSID": "shop",
                                                  "PB_WIFI_PASSWORD": "password1",
                                                  "PB_GATEWAY_URL": url},
                     wifi_networks={"shop": "password1"})


def test_small_nvm_falls_back_to_a_press_and_says_why(wifi_gateway, tmp_path):
    rec, db, url = wifi_gateway
    btn = _button(rec, url, tmp_path, nvm_size=nvmstore.NVM_MIN)  # identity fits, request not
    usb = btn.usb_console(link_dir=tmp_path)
    btn.start()
    done = threading.Event()

    def installer() -> None:  # presses 5 times once the reloaded firmware has reported
        while not done.is_set():
            if usb.reloads and len(btn.boot_reports()) >= 2:
                btn.test()
                return
            time.sleep(0.05)

    presser = threading.Thread(target=installer, daemon=True)
    presser.start()
    try:
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 15)
        r = runner.invoke(app, ["verify", "--port", usb.path, "--gateway-db", str(db),
                                "--timeout", "30", "--json"])
    finally:
        done.set()
        btn.stop()
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["TEST request"]["status"] == "WARN"
    assert f"{nvmstore.NVM_MIN} bytes of NVM" in checks["TEST request"]["detail"]
    assert checks["TEST press"]["status"] == "PASS"
    assert checks["gateway heard TEST"]["status"] == "PASS"
    assert doc["test"]["trigger"] == "press" and doc["boot_report"]["remote_test"] is None
    assert [h["path"] for h in doc["heard"]] == ["wifi"]


def test_no_test_leaves_nvm_alone_and_a_silent_board_fails(wifi_gateway, tmp_path):
    rec, db, url = wifi_gateway
    btn = _button(rec, url, tmp_path, nvm_size=4096)
    usb = btn.usb_console(link_dir=tmp_path)
    btn.start()
    try:
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 15)
        r = runner.invoke(app, ["verify", "--port", usb.path, "--gateway-db", str(db),
                                "--no-test", "--json"])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc["test"] is None and "TEST sent" not in {c["name"] for c in doc["checks"]}
        assert nvmstore.read_remote_test(btn.nvm.data) is None
        assert not btn.lines("press: test")
        # The radio path is gone and Wi-Fi fails: the TEST is sent but never stored.
        btn.wifi_networks.clear()
        r = runner.invoke(app, ["verify", "--port", usb.path, "--gateway-db", str(db),
                                "--timeout", "3", "--json"])
    finally:
        btn.stop()
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["TEST sent"]["status"] == "PASS"
    assert checks["gateway heard TEST"]["status"] == "FAIL"
    assert doc["ok"] is False
