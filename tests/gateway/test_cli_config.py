"""Config validation (messages name the key; `panicgw run` exits 2) and `panicgw devices`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from gwkit import make_record
from typer.testing import CliRunner

from panicgw import config, registry
from panicgw.cli import app
from panicgw.store import Store

runner = CliRunner()
PANICGW = [str(Path(sys.executable).parent / "panicgw")]


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[http]\nport = 70000\n", "[http] port"),
        ("[http]\nprot = 8080\n", "unknown key 'prot' (did you mean 'port'?)"),
        ("[htttp]\nport = 1\n", "unknown section [htttp]"),
        ("[serial]\nregion = \"MARS\"\n", "[serial] region"),
        ("[serial]\nfrequency_mhz = 868.1\n", "[serial] frequency_mhz"),
        ("[serial]\nspreading_factor = 12\n", "[serial] spreading_factor"),
        ("[http]\ntls_cert = \"a.pem\"\n", "[http] tls_key"),
        ("[dispatch]\nurl = \"ftp://x\"\n", "[dispatch] url"),
        ("[pipeline]\nreplay_window = \"64\"\n", "[pipeline] replay_window"),
        ("[gateway\nid = 1\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, toml, needle):
    p = tmp_path / "gw.toml"
    p.write_text(toml)
    with pytest.raises(config.ConfigError) as e:
        config.load(p)
    assert needle in str(e.value)


def test_defaults_need_nothing():
    cfg = config.load(None)
    assert cfg.db_path.name == "gateway.db" and cfg.mqtt["enabled"] is False
    assert cfg.dispatch["url"] == "" and cfg.http["port"] == 8080


def test_example_config_is_valid():
    example = Path(__file__).resolve().parents[2] / "deploy" / "gateway.toml.example"
    cfg = config.load(example)
    assert cfg.gateway["id"]


def test_run_with_bad_config_exits_2(tmp_path):
    p = tmp_path / "gw.toml"
    p.write_text("[http]\nmax_body = 5\n")
    r = subprocess.run(PANICGW + ["run", "--config", str(p)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "[http] max_body" in r.stderr and "Traceback" not in r.stderr


def test_run_check_hides_secrets(tmp_path):
    p = tmp_path / "gw.toml"
    p.write_text('[dispatch]\nurl = "https://d.example/v1"\ntoken = "s3cret"\n')
    r = runner.invoke(app, ["run", "--config", str(p), "--check"])
    assert r.exit_code == 0 and "s3cret" not in r.output and "***" in r.output


def _gateway_db(tmp_path: Path) -> Path:
    """The DB as `panicgw run` (or `panicgw setup`) leaves it: tools never create it."""
    db = tmp_path / "gw.db"
    Store(db).close()
    return db


def test_devices_import_list_show_rekey_export_remove(tmp_path):
    db = _gateway_db(tmp_path)
    exp = tmp_path / "export.json"
    registry.write_export(exp, [make_record(0x1234ABCD), make_record(0x00000042)])
    r = runner.invoke(app, ["devices", "import", str(exp), "--db", str(db)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["devices", "list", "--gateway-db", str(db), "--json"])
    rows = json.loads(r.output)
    assert [x["device_id"] for x in rows] == ["00000042", "1234ABCD"]
    assert all("key" not in x for x in rows) and rows[0]["key_gen"] == 1
    r = runner.invoke(app, ["devices", "show", "1234abcd", "--db", str(db), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["site"]["name"] == "Toko Sinar"
    assert runner.invoke(app, ["devices", "show", "0xFF", "--db", str(db)]).exit_code == 1
    assert runner.invoke(app, ["devices", "show", "nothex", "--db", str(db)]).exit_code == 2
    kf = tmp_path / "42.key"
    r = runner.invoke(app, ["devices", "rekey", "42", "--db", str(db), "--key-file", str(kf),
                            "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"device_id": "00000042", "key_gen": 2, "key_file": str(kf)}
    new = registry.read_key_file_full(kf)
    assert (new.device_id, new.key_gen) == (0x42, 2)
    assert new.key.hex() not in r.output
    s = Store(db)
    assert s.get_device(0x42).key == new.key and s.get_device(0x42).key_gen == 2
    s.close()
    out = tmp_path / "out.json"
    assert runner.invoke(app, ["devices", "export", str(out), "--db", str(db)]).exit_code == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert {r.device_id: r.key_gen for r in registry.read_export(out)} == {0x1234ABCD: 1,
                                                                            0x42: 2}
    r = runner.invoke(app, ["devices", "remove", "1234ABCD", "--yes", "--db", str(db)])
    assert r.exit_code == 0
    r = runner.invoke(app, ["devices", "list", "--db", str(db), "--json"])
    assert [x["device_id"] for x in json.loads(r.output)] == ["00000042"]


def test_devices_rekey_never_prints_the_key_nor_takes_it_as_an_argument(tmp_path):
    """Issue 11.7: a key on the command line lands in shell history and `ps`; one printed
    lands in scrollback and logs. Prompt, file or environment only."""
    db = _gateway_db(tmp_path)
    store = Store(db)
    store.upsert_device(make_record(0x42))
    store.close()

    def key_now() -> bytes:
        s = Store(db)
        try:
            return s.get_device(0x42).key
        finally:
            s.close()

    before = key_now()
    # no --key option at all any more
    r = runner.invoke(app, ["devices", "rekey", "42", "--db", str(db), "--key", "00" * 16])
    assert r.exit_code == 2 and "No such option" in r.output and key_now() == before
    # a generated key must go to a file: refusing beats a key nobody can put on the button
    r = runner.invoke(app, ["devices", "rekey", "42", "--db", str(db)])
    assert r.exit_code == 2 and "--key-file" in r.output and key_now() == before
    # from a file (a key file or bare hex)
    hexfile = tmp_path / "k.hex"
    hexfile.write_text("11" * 16 + "\n")
    r = runner.invoke(app, ["devices", "rekey", "42", "--db", str(db), "--use-key",
                            str(hexfile)])
    assert r.exit_code == 0 and key_now() == bytes([0x11] * 16) and "11" * 16 not in r.output
    assert "key generation 2" in r.output
    # from the environment
    r = runner.invoke(app, ["devices", "rekey", "42", "--db", str(db), "--key-env",
                            "PB_TEST_KEY"], env={"PB_TEST_KEY": "22" * 16})
    assert r.exit_code == 0 and key_now() == bytes([0x22] * 16) and "22" * 16 not in r.output
    r = runner.invoke(app, ["devices", "rekey", "42", "--db", str(db), "--key-env", "NOPE"])
    assert r.exit_code == 2 and "NOPE" in r.output and key_now() == bytes([0x22] * 16)
    # at a hidden prompt, typed twice
    r = runner.invoke(app, ["devices", "rekey", "42", "--db", str(db), "--prompt-key"],
                      input="33" * 16 + "\n" + "33" * 16 + "\n")
    assert r.exit_code == 0, r.output
    assert key_now() == bytes([0x33] * 16) and "33" * 16 not in r.output
    # generated, into a 0600 key file, never on the screen or in --json
    kf = tmp_path / "new.key"
    r = runner.invoke(app, ["devices", "rekey", "42", "--db", str(db), "--key-file", str(kf)])
    assert r.exit_code == 0 and stat.S_IMODE(os.stat(kf).st_mode) == 0o600
    assert key_now().hex() not in r.output and key_now() == registry.read_key_file(kf)[1]
    assert "panictool rekey --use-key" in r.output
    assert registry.read_key_file_full(kf).key_gen == 5
    # the key file of another device is refused
    registry.write_key_file(tmp_path / "other.key", 0x43, bytes(16))
    r = runner.invoke(app, ["devices", "rekey", "42", "--db", str(db), "--use-key",
                            str(tmp_path / "other.key")])
    assert r.exit_code == 2 and "00000043" in r.output


def test_reimporting_an_old_export_after_a_rekey_is_refused(tmp_path):
    """Issue 10.4: the provision export is imported again after a rekey; the new key stays
    (else the button is locked out: every frame bad_tag) unless --allow-older-key."""
    db = _gateway_db(tmp_path)
    exp = tmp_path / "provision-export.json"
    registry.write_export(exp, [make_record(0x1234ABCD)])
    assert runner.invoke(app, ["devices", "import", str(exp), "--db", str(db)]).exit_code == 0
    kf = tmp_path / "new.key"
    r = runner.invoke(app, ["devices", "rekey", "1234ABCD", "--db", str(db), "--key-file",
                            str(kf)])
    assert r.exit_code == 0, r.output
    new_key = registry.read_key_file(kf)[1]

    def stored() -> tuple[bytes, int]:
        s = Store(db)
        try:
            d = s.get_device(0x1234ABCD)
            return d.key, d.key_gen
        finally:
            s.close()

    r = runner.invoke(app, ["devices", "import", str(exp), "--db", str(db)])
    assert r.exit_code == 1
    assert "1234ABCD" in r.output and "generation 2" in r.output and "generation 1" in r.output
    assert "--allow-older-key" in r.output and "nothing was imported" in r.output
    assert stored() == (new_key, 2)
    r = runner.invoke(app, ["devices", "import", str(exp), "--db", str(db), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout.splitlines()[0])
    assert (doc["refused"], doc["stored_key_gen"], doc["file_key_gen"]) == ("1234ABCD", 2, 1)
    # the same generation with another key (a forked key) is refused too
    forked = tmp_path / "forked.json"
    registry.write_export(forked, [make_record(0x1234ABCD, key=bytes(range(1, 17)),
                                               key_gen=2)])
    r = runner.invoke(app, ["devices", "import", str(forked), "--db", str(db)])
    assert r.exit_code == 1 and "forked key" in r.output and stored() == (new_key, 2)
    # the override: the file's key wins and becomes the newest generation
    r = runner.invoke(app, ["devices", "import", str(exp), "--db", str(db),
                            "--allow-older-key"])
    assert r.exit_code == 0, r.output
    assert stored() == (make_record().key, 3)


def test_devices_import_bad_file_names_field(tmp_path):
    exp = tmp_path / "bad.json"
    exp.write_text(json.dumps({"format": "panic-button-registry/1", "devices": [
        {"device_id": 5, "key": "zz", "site": {}}]}))
    r = runner.invoke(app, ["devices", "import", str(exp), "--db", str(_gateway_db(tmp_path))])
    assert r.exit_code == 2 and "'key'" in r.output


def test_every_relative_path_is_relative_to_the_config_file(tmp_path, monkeypatch):
    d = tmp_path / "etc"
    d.mkdir()
    p = d / "gw.toml"
    p.write_text('[gateway]\ndata_dir = "data"\n[serial]\nport = "ttyBRIDGE"\n'
                 '[http]\ntls_cert = "c.pem"\ntls_key = "k.pem"\n'
                 '[dispatch]\nca_file = "ca.pem"\nclient_cert = "cc.pem"\nclient_key = "ck.pem"\n')
    monkeypatch.chdir(tmp_path)
    cfg = config.load(Path("etc/gw.toml"))
    assert cfg.data_dir == d / "data" and cfg.serial["port"] == str(d / "ttyBRIDGE")
    for sec, key, name in (("http", "tls_cert", "c.pem"), ("http", "tls_key", "k.pem"),
                           ("dispatch", "ca_file", "ca.pem"),
                           ("dispatch", "client_cert", "cc.pem"),
                           ("dispatch", "client_key", "ck.pem")):
        assert cfg.values[sec][key] == str(d / name)
    for port in ("auto", "/dev/ttyACM0"):
        p.write_text(f'[serial]\nport = "{port}"\n')
        assert config.load(p).serial["port"] == port
