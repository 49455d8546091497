"""`panictool verify` and `console` over a MicroPython board on a pty."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from panicbutton import nvmstore
from panicgw import registry
from panictool import identity
from panictool.cli import app
from panictool.transport_serial import SerialTransport

runner = CliRunner()


def test_verify_unprovisioned_and_unregistered(mpboard, tmp_path):
    export = tmp_path / "e.json"
    registry.write_export(export, [])
    r = runner.invoke(app, ["verify", "--port", mpboard.port, "--export", str(export), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.output)
    assert doc["checks"][0]["name"] == "identity" and doc["checks"][0]["status"] == "FAIL"
    key = bytes(range(16))
    with SerialTransport(mpboard.port) as t:
        identity.write_identity(t, 0xCAFE0001, key)
        assert identity.board_identity(t) == (0xCAFE0001, identity.fingerprint(key))
    registry.write_export(export, [registry.DeviceRecord(
        0x0BAD0BAD, bytes(16), registry.SiteRecord("X", "home", "Y", 0.0, 0.0))])
    r = runner.invoke(app, ["verify", "--port", mpboard.port, "--export", str(export)])
    assert r.exit_code == 6 and "CAFE0001 is not in the registry" in r.output


def test_fingerprint_is_computed_on_the_board_without_sending_the_key(mpboard):
    key = bytes.fromhex("00112233445566778899aabbccddeeff")
    rec = nvmstore.identity_record(7, key)
    broken = rec[:-1] + bytes([rec[-1] ^ 1])  # bad CRC: not a valid identity
    with SerialTransport(mpboard.port) as t:
        t.nvm_write(0, broken)
        assert identity.board_identity(t) is None
        t.nvm_write(0, rec)
        assert identity.board_identity(t) == (7, identity.fingerprint(key))


def test_console_follows_output(mpboard):
    with SerialTransport(mpboard.port) as t:
        t.exec("pass")  # leaves the VM at its raw prompt; close() returns it to the REPL
    r = runner.invoke(app, ["console", "--port", mpboard.port, "--seconds", "0.5", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["console", "--port", "/nonexistent/tty", "--seconds", "0.2"])
    assert r.exit_code == 4 and "no serial port" in r.output


def test_console_lists_ports():
    r = runner.invoke(app, ["console", "--list", "--json"])
    assert r.exit_code == 0 and isinstance(json.loads(r.output), list)
