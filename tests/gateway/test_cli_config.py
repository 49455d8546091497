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


def test_devices_import_list_show_rekey_export_remove(tmp_path):
    db = tmp_path / "gw.db"
    exp = tmp_path / "export.json"
    registry.write_export(exp, [make_record(0x1234ABCD), make_record(0x00000042)])
    r = runner.invoke(app, ["devices", "import", str(exp), "--db", str(db)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["devices", "list", "--db", str(db), "--json"])
    rows = json.loads(r.output)
    assert [x["device_id"] for x in rows] == ["00000042", "1234ABCD"]
    assert all("key" not in x for x in rows)
    r = runner.invoke(app, ["devices", "show", "1234abcd", "--db", str(db), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["site"]["name"] == "Toko Sinar"
    assert runner.invoke(app, ["devices", "show", "0xFF", "--db", str(db)]).exit_code == 1
    assert runner.invoke(app, ["devices", "show", "nothex", "--db", str(db)]).exit_code == 2
    r = runner.invoke(app, ["devices", "rekey", "42", "--db", str(db), "--json"])
    new_key = bytes.fromhex(json.loads(r.output)["key"])
    s = Store(db)
    assert s.get_device(0x42).key == new_key
    s.close()
    out = tmp_path / "out.json"
    assert runner.invoke(app, ["devices", "export", str(out), "--db", str(db)]).exit_code == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert {r.device_id for r in registry.read_export(out)} == {0x1234ABCD, 0x42}
    r = runner.invoke(app, ["devices", "remove", "1234ABCD", "--yes", "--db", str(db)])
    assert r.exit_code == 0
    r = runner.invoke(app, ["devices", "list", "--db", str(db), "--json"])
    assert [x["device_id"] for x in json.loads(r.output)] == ["00000042"]


def test_devices_import_bad_file_names_field(tmp_path):
    exp = tmp_path / "bad.json"
    exp.write_text(json.dumps({"format": "panic-button-registry/1", "devices": [
        {"device_id": 5, "key": "zz", "site": {}}]}))
    r = runner.invoke(app, ["devices", "import", str(exp), "--db", str(tmp_path / "g.db")])
    assert r.exit_code == 2 and "'key'" in r.output
