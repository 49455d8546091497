"""Issue 10.3 / contract C3, panicgw side: `panicgw devices`, `events`, `outbox`, `monitor`
and `diag` open the gateway DB only through panicgw.access. Given a path where there is no
DB, or a file that is not a gateway DB, each refuses with the fix and leaves no file behind
(and never changes the foreign file).

The matrix of commands x paths runs the `panicgw` app in this process (typer's CliRunner: the
same app the console script runs, without 27 interpreter start-ups); the config-based cases
run the installed console script."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from gwkit import make_record
from typer.testing import CliRunner

from panicgw import registry
from panicgw.cli import app

PANICGW = str(Path(sys.executable).parent / "panicgw")

# (argv after `panicgw`, where the DB goes) for every command that opens the DB
DB_COMMANDS = [
    ["devices", "list"],
    ["devices", "show", "0000BEEF"],
    ["devices", "import", "{export}"],
    ["devices", "export", "{out}"],
    ["devices", "remove", "0000BEEF", "--yes"],
    ["devices", "rekey", "0000BEEF", "--key-file", "{out}"],
    ["events"],
    ["outbox", "list"],
    ["outbox", "requeue", "--all-dead"],
]


def _snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _case(tmp_path: Path, kind: str) -> Path:
    """The path the tool is given: nothing there, a foreign SQLite DB, or a text file."""
    if kind == "missing":
        return tmp_path / "var" / "lib" / "panicgw" / "panicgw.db"  # the old docs' path
    if kind == "sqlite":
        p = tmp_path / "notes.db"
        con = sqlite3.connect(p)
        con.execute("CREATE TABLE notes (t TEXT)")
        con.execute("INSERT INTO notes VALUES ('milk')")
        con.commit()
        con.close()
        return p
    p = tmp_path / "gateway.toml.db"
    p.write_text("[gateway]\nid = 'not a database'\n")
    return p


@pytest.fixture
def export(tmp_path: Path) -> Path:
    p = tmp_path / "in" / "export.json"
    p.parent.mkdir()
    registry.write_export(p, [make_record()])
    return p


@pytest.mark.parametrize("kind", ["missing", "sqlite", "text"])
@pytest.mark.parametrize("argv", DB_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_db_commands_refuse_a_path_without_a_gateway_db(tmp_path, export, argv, kind):
    db = _case(tmp_path, kind)
    out = tmp_path / "out" / "result"
    out.parent.mkdir()
    args = [a.format(export=export, out=out) for a in argv]
    before = _snapshot(tmp_path)
    r = CliRunner().invoke(app, [*args, "--gateway-db", str(db)])
    assert r.exit_code == 3, (args, r.stdout, r.stderr)
    msg = r.stderr
    if kind == "missing":
        assert f"no gateway DB at {db}" in msg and "panicgw run" in msg, msg
    else:
        assert "not a gateway DB" in msg or "cannot open gateway DB" in msg, msg
    assert "--config" in msg, msg  # the fix: the gateway's own config
    assert "Traceback" not in r.stderr
    assert _snapshot(tmp_path) == before  # nothing created, nothing changed
    assert not db.parent.exists() if kind == "missing" else True


@pytest.mark.parametrize("kind", ["missing", "sqlite"])
def test_config_based_commands_refuse_and_create_nothing(tmp_path, kind):
    """events, monitor, outbox and devices through --config (the data_dir has no gateway
    DB), and diag, which reports it as a FAIL with the fix."""
    data = tmp_path / "data"
    if kind == "sqlite":
        data.mkdir()
        con = sqlite3.connect(data / "gateway.db")
        con.execute("CREATE TABLE other (x)")
        con.commit()
        con.close()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[gateway]\ndata_dir = "{data}"\n[serial]\nenabled = false\n'
                   '[status]\nport = 1\n')
    before = _snapshot(tmp_path)
    for args in (["events"], ["monitor", "--count", "1"], ["outbox", "list"],
                 ["devices", "list"]):
        r = subprocess.run([PANICGW, *args, "--config", str(cfg)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 3, (args, r.stderr)
        assert ("no gateway DB" if kind == "missing" else "not a gateway DB") in r.stderr
        assert _snapshot(tmp_path) == before, args
    r = subprocess.run([PANICGW, "diag", "--config", str(cfg), "--json"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    res = {x["id"]: x for x in json.loads(r.stdout)["results"]}
    if kind == "missing":
        assert res["db"]["status"] == "FAIL" and "panicgw run" in res["db"]["hint"]
    else:
        assert res["db.integrity"]["status"] == "FAIL"
        assert "not a gateway DB" in res["db.integrity"]["finding"]
    assert _snapshot(tmp_path) == before
    assert not data.exists() if kind == "missing" else True


def test_without_config_the_installed_gateways_config_is_used(tmp_path):
    """No --config: $PANICGW_CONFIG, else /etc/panicgw/gateway.toml (what the unit runs), not
    a ./panicgw-data of whatever directory the technician stands in."""
    import os

    env = {**os.environ, "PANICGW_CONFIG": str(tmp_path / "absent.toml")}
    for args in (["devices", "list"], ["events"], ["outbox", "list"]):
        r = subprocess.run([PANICGW, *args], capture_output=True, text=True, timeout=60,
                           cwd=tmp_path, env=env)
        assert r.returncode == 2, (args, r.stderr)
        assert f"no gateway config at {tmp_path / 'absent.toml'}" in r.stderr
        assert "--config" in r.stderr
    r = subprocess.run([PANICGW, "diag", "--json"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path, env=env)
    res = {x["id"]: x for x in json.loads(r.stdout)["results"]}
    assert r.returncode == 2 and res["config"]["status"] == "FAIL"
    assert "panicgw setup" in res["config"]["hint"]
    assert list(tmp_path.iterdir()) == []
