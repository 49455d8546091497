"""`panictool rekey` against a MicroPython board on a pty, and its hand-over from
`panicgw devices rekey --key-file`: the id stays, the key changes on both ends, and
neither command ever prints the key."""

from __future__ import annotations

import json
import sqlite3
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
    if not db.exists():
        Store(db).close()  # as the daemon creates it on its first start
    r = runner.invoke(app, ["provision", *SITE, "--gateway-db", str(db), "--drive", str(cp),
                            "--port", mpboard.port, "--label-dir", str(tmp_path),
                            "--no-qr", "--json"])
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
                            "--key-file", str(keyfile), "--json"])
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
    # the identity record and the counter changed (epoch slots: the firmware's record for
    # epoch 0, so the next boot starts epoch 1); the rest of NVM is kept
    after = mpboard.nvm()
    assert after[nvmstore.SLOT_A:nvmstore.NVM_MIN] == identity.epoch_record(0)
    assert nvmstore.EpochStore(bytearray(after)).read() == 0
    assert after[nvmstore.IDENTITY_LEN:nvmstore.SLOT_A] == \
        before[nvmstore.IDENTITY_LEN:nvmstore.SLOT_A]
    assert after[nvmstore.NVM_MIN:] == before[nvmstore.NVM_MIN:]
    assert doc["counter_restarted"] is True


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
    r = runner.invoke(app, ["rekey", "--use-key", str(handover), "--port", mpboard.port])
    assert r.exit_code == 0, r.output
    assert nvmstore.read_identity(bytearray(mpboard.nvm())) == (dev, gw_key)
    assert gw_key.hex() not in r.output
    # again: nothing to write, still a success
    r = runner.invoke(app, ["rekey", "--use-key", str(handover), "--port", mpboard.port,
                            "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["changed"] is False


def test_rekey_refuses_the_wrong_board_and_bad_input(mpboard, tmp_path):
    r = runner.invoke(app, ["rekey", "--use-key", str(tmp_path / "x"), "--gateway-db",
                            str(tmp_path / "gw.db"), "--port", mpboard.port])
    assert r.exit_code == 2 and "not both" in r.output
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


def test_missing_db_is_refused_and_a_failed_db_update_puts_the_old_key_back(
        mpboard, tmp_path, monkeypatch):
    db = tmp_path / "gw.db"
    dev, key = _provision(mpboard, tmp_path, db)
    provisioned = mpboard.nvm()
    typo = tmp_path / "gw.bd"
    r = runner.invoke(app, ["rekey", "--gateway-db", str(typo), "--port", mpboard.port])
    assert r.exit_code == 6 and f"no gateway DB at {typo}" in r.output
    assert not typo.exists() and mpboard.nvm() == provisioned
    # no option at all: the default config (here: none on this machine) names both ways
    r = runner.invoke(app, ["rekey", "--port", mpboard.port],
                      env={"PANICGW_CONFIG": str(tmp_path / "none.toml")})
    assert r.exit_code == 6 and "--config" in r.output and "--use-key" in r.output

    def disk_error(self, device_id, key, now=None):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "rekey", disk_error)
    r = runner.invoke(app, ["rekey", "--gateway-db", str(db), "--port", mpboard.port,
                            "--json"])
    assert r.exit_code == 6, r.output
    doc = json.loads(r.output)
    assert "disk I/O error" in doc["error"] and "old key back" in doc["error"]
    assert mpboard.nvm() == provisioned and _db_key(db, dev) == key  # both ends agree
    assert not list(tmp_path.glob("rekey-*.key"))  # no key file needed, none written


def test_use_key_reports_the_key_generation_of_the_gateways_file(mpboard, tmp_path):
    db = tmp_path / "gw.db"
    dev, _ = _provision(mpboard, tmp_path, db)
    handover = tmp_path / "k.key"
    handover.write_text(json.dumps({"device_id": dev, "key": "5a" * 16, "key_gen": 3}))
    r = runner.invoke(app, ["rekey", "--use-key", str(handover), "--port", mpboard.port])
    assert r.exit_code == 0, r.output
    assert "(key generation 3)" in r.output and "5a" * 16 not in r.output
    assert nvmstore.read_identity(bytearray(mpboard.nvm())) == (dev, bytes([0x5A] * 16))
