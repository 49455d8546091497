"""`panictool rekey` against a MicroPython board on a pty, and its hand-over from
`panicgw devices rekey --key-file`: the id stays, the key changes on both ends, and
neither command ever prints the key."""

from __future__ import annotations

import json
import stat

from drivefakes import make_circuitpy
from typer.testing import CliRunner

from panicbutton import nvmstore
from panicgw.cli import app as gw_app
from panicgw.store import Store
from panictool import identity
from panictool.cli import app

runner = CliRunner()
SITE = ["--site-name", "Toko Maju", "--kind", "shop", "--address", "Jl. Merdeka 12, Bandung",
        "--lat", "-6.9147", "--lon", "107.6098"]


def _provision(mpboard, tmp_path, db) -> tuple[int, bytes]:
    Store(db).close()  # C3: only the gateway creates it
    cp = make_circuitpy(mpboard.fs)
    r = runner.invoke(app, ["provision", *SITE, "--gateway-db", str(db), "--drive", str(cp),
                            "--port", mpboard.port, "--label-dir", str(tmp_path),
                            "--no-reboot", "--no-qr", "--json"])
    assert r.exit_code == 0, r.output
    ident = nvmstore.read_identity(bytearray(mpboard.nvm()))
    assert ident is not None
    return ident


def _db_key(db, dev: int) -> bytes:
    s = Store(db)
    try:
        return s.get_device(dev).key
    finally:
        s.close()


def test_rekey_with_the_gateway_db_keeps_the_id(mpboard, tmp_path):
    db = tmp_path / "gw.db"
    dev, old_key = _provision(mpboard, tmp_path, db)
    before = mpboard.nvm()
    keyfile = tmp_path / "backup.key"
    r = runner.invoke(app, ["rekey", "--gateway-db", str(db), "--port", mpboard.port,
                            "--key-file", str(keyfile), "--no-reboot", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    new_dev, new_key = nvmstore.read_identity(bytearray(mpboard.nvm()))
    assert new_dev == dev and new_key != old_key
    assert _db_key(db, dev) == new_key
    assert doc["device_id"] == dev and doc["changed"] is True
    assert doc["old_fingerprint"] == identity.fingerprint(old_key)
    assert doc["key_fingerprint"] == identity.fingerprint(new_key)
    assert new_key.hex() not in r.output
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert json.loads(keyfile.read_text())["key"] == new_key.hex()
    # only the identity record changed: the counter slots (and the rest of NVM) are kept
    after = mpboard.nvm()
    assert after[nvmstore.IDENTITY_LEN:] == before[nvmstore.IDENTITY_LEN:]


def test_rekey_from_the_gateways_key_file(mpboard, tmp_path):
    db = tmp_path / "gw.db"
    dev, old_key = _provision(mpboard, tmp_path, db)
    handover = tmp_path / f"{dev:08X}.key"
    r = runner.invoke(gw_app, ["devices", "rekey", f"{dev:08X}", "--db", str(db),
                               "--key-file", str(handover)])
    assert r.exit_code == 0, r.output
    gw_key = _db_key(db, dev)
    assert gw_key != old_key and gw_key.hex() not in r.output
    assert "panictool rekey --use-key" in r.output
    assert stat.S_IMODE(handover.stat().st_mode) == 0o600
    r = runner.invoke(app, ["rekey", "--use-key", str(handover), "--port", mpboard.port,
                            "--no-reboot"])
    assert r.exit_code == 0, r.output
    assert nvmstore.read_identity(bytearray(mpboard.nvm())) == (dev, gw_key)
    assert gw_key.hex() not in r.output
    # again: nothing to write, still a success
    r = runner.invoke(app, ["rekey", "--use-key", str(handover), "--port", mpboard.port,
                            "--no-reboot", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["changed"] is False


def test_rekey_refuses_the_wrong_board_and_bad_input(mpboard, tmp_path):
    r = runner.invoke(app, ["rekey", "--use-key", str(tmp_path / "x"), "--gateway-db",
                            str(tmp_path / "gw.db"), "--port", mpboard.port])
    assert r.exit_code == 2 and "exactly one" in r.output
    bad = tmp_path / "bad.key"
    bad.write_text("not hex at all")
    r = runner.invoke(app, ["rekey", "--use-key", str(bad), "--port", mpboard.port])
    assert r.exit_code == 2 and "32 hex digits" in r.output
    blank = mpboard.nvm()
    good = tmp_path / "other.key"
    good.write_text(json.dumps({"device_id": 0x0BADBEEF, "key": "11" * 16}))
    r = runner.invoke(app, ["rekey", "--use-key", str(good), "--port", mpboard.port])
    assert r.exit_code == 1 and "no identity" in r.output  # unprovisioned board
    db = tmp_path / "gw.db"
    dev, key = _provision(mpboard, tmp_path, db)
    provisioned = mpboard.nvm()
    assert provisioned != blank
    r = runner.invoke(app, ["rekey", "--use-key", str(good), "--port", mpboard.port])
    assert r.exit_code == 1 and "0BADBEEF" in r.output and f"{dev:08X}" in r.output
    other_db = tmp_path / "other.db"
    Store(other_db).close()
    r = runner.invoke(app, ["rekey", "--gateway-db", str(other_db), "--port", mpboard.port])
    assert r.exit_code == 6 and "not registered" in r.output
    assert mpboard.nvm() == provisioned and _db_key(db, dev) == key


def test_gateway_rekey_key_file_is_not_left_for_an_unknown_device(tmp_path):
    db = tmp_path / "gw.db"
    Store(db).close()
    out = tmp_path / "k.key"
    r = runner.invoke(gw_app, ["devices", "rekey", "00000042", "--db", str(db),
                               "--key-file", str(out)])
    assert r.exit_code == 1 and not out.exists()
    r = runner.invoke(gw_app, ["devices", "rekey", "00000042", "--db", str(db),
                               "--key", "22" * 16, "--key-file", str(out)])
    assert r.exit_code == 2 and not out.exists()
