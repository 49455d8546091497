"""The administrator's command line on a real database: configuration checks that name the
key, the first admin (password never on argv), sites from the gateway's registry export
(keys never read in) or from dispatch bodies, action plans, gateways, audit export."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import sqlite3
import subprocess
import termios
import time
from pathlib import Path

import pytest
from consolekit import BIN, PASSWORD, SECRET, TOKEN, run_cli

from panicconsole import config as config_mod
from panicgw.registry import DeviceRecord, SiteRecord, write_export


def _cfg(tmp: Path, extra: str = "") -> Path:
    p = tmp / "console.toml"
    p.write_text(f'[console]\ndata_dir = "{tmp / "data"}"\nlog_format = "text"\n'
                 f'[dispatch]\ntoken = "{TOKEN}"\nsecret = "{SECRET}"\n' + extra)
    return p


@pytest.mark.parametrize("text, message", [
    ("[server]\nprot = 8443\n", "[server] unknown key 'prot' (did you mean 'port'?)"),
    ("[sever]\nport = 1\n", "unknown section [sever] (did you mean 'server'?)"),
    ("[server]\nport = 70000\n", "[server] port must be an integer 0..65535, got 70000"),
    ("[queue]\nwarn_after_s = 60\ndanger_after_s = 30\n", "danger_after_s (30) must be greater"),
    ("[server]\ntls_cert = \"a.crt\"\n", "[server] tls_key must be set together"),
    ("[server]\nhost = \"0.0.0.0\"\n", "reachable from the network but TLS is off"),
    ("[map]\ntile_url = \"https://tiles.example/x.png\"\n", "[map] tile_url must be an http(s)"),
    ("[console]\nlanguage = \"fr\"\n", "[console] language must be one of id, en"),
    ("[dispatch]\nkeep_days = 3\n", "[dispatch] keep_days must be an integer 7..3650"),
])
def test_config_errors_name_the_key(tmp_path, text, message):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(config_mod.ConfigError) as e:
        config_mod.load(p, env={})
    assert message in str(e.value)
    r = run_cli("config", "check", config=p, check=False)
    assert r.returncode == 2 and message in r.stderr


def test_config_check_reports_what_keeps_serve_from_working(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(f'[console]\ndata_dir = "{tmp_path}"\n')
    r = run_cli("config", "check", "--json", config=p, check=False,
                env={"PANICCONSOLE_DISPATCH_TOKEN": "", "PANICCONSOLE_DISPATCH_SECRET": ""})
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and not doc["ok"]
    assert any("[dispatch] token is empty" in x for x in doc["problems"])
    serve = run_cli("serve", config=p, check=False,
                    env={"PANICCONSOLE_DISPATCH_TOKEN": "", "PANICCONSOLE_DISPATCH_SECRET": ""})
    assert serve.returncode == 2 and "[dispatch] secret is empty" in serve.stderr
    # secrets from the environment instead of the file; never printed back
    r = run_cli("config", "check", "--json", config=p, check=False,
                env={"PANICCONSOLE_DISPATCH_TOKEN": "tok-from-env",
                     "PANICCONSOLE_DISPATCH_SECRET": "sec-from-env"})
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["ok"] and doc["settings"]["dispatch"]["token"] == "***"
    assert "tok-from-env" not in r.stdout + r.stderr and "sec-from-env" not in r.stdout


def test_first_admin_password_never_from_argv(tmp_path):
    cfg = _cfg(tmp_path)
    # no --password option exists at all
    r = run_cli("user", "add", "siti", "--role", "admin", "--password", "x" * 12, config=cfg,
                check=False)
    assert r.returncode == 2 and "No such option" in r.stderr
    # no terminal and no file/env: refuse, saying how
    r = run_cli("user", "add", "siti", "--role", "admin", config=cfg, check=False,
                env={"PANICCONSOLE_PASSWORD": ""}, input="")
    assert r.returncode == 2 and "--password-file" in r.stderr
    # too short
    pw = tmp_path / "pw"
    pw.write_text("short\n")
    r = run_cli("user", "add", "siti", "--role", "admin", "--password-file", str(pw),
                config=cfg, check=False)
    assert r.returncode == 2 and "at least 10 characters" in r.stderr
    # from a file: the database is created, the hash is argon2id, the DB file is 0600
    pw.write_text(PASSWORD + "\n")
    r = run_cli("user", "add", "siti", "--role", "admin", "--password-file", str(pw),
                "--json", config=cfg)
    assert json.loads(r.stdout)["role"] == "admin"
    db = tmp_path / "data" / "console.db"
    assert os.stat(db).st_mode & 0o777 == 0o600
    h = sqlite3.connect(db).execute("SELECT pw_hash FROM users WHERE username = 'siti'")
    assert h.fetchone()[0].startswith("$argon2id$")
    assert PASSWORD.encode() not in db.read_bytes()
    # the same name again is refused
    r = run_cli("user", "add", "SITI", "--password-file", str(pw), config=cfg, check=False)
    assert r.returncode == 2 and "already exists" in r.stderr


def test_user_add_hidden_prompt_on_a_terminal(tmp_path):
    """On a terminal: asked twice, never echoed."""
    cfg = _cfg(tmp_path)
    master, slave = pty.openpty()

    def controlling_tty() -> None:  # the pty becomes the child's terminal (/dev/tty)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {k: v for k, v in os.environ.items() if k != "PANICCONSOLE_PASSWORD"}
    proc = subprocess.Popen([str(BIN / "panicconsole"), "user", "add", "rudi", "--role",
                             "supervisor", "--config", str(cfg)], stdin=slave, stdout=slave,
                            stderr=slave, env=env, start_new_session=True,
                            preexec_fn=controlling_tty)
    out = b""
    answered = 0
    end = time.monotonic() + 30
    try:
        while time.monotonic() < end and proc.poll() is None:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                out += os.read(master, 1024)
            if out.count(b"Password:") + out.count(b"confirmation:") > answered:
                answered += 1
                # answer once the prompt has switched echo off, as a person would type
                while termios.tcgetattr(slave)[3] & termios.ECHO and time.monotonic() < end:
                    time.sleep(0.01)
                os.write(master, (PASSWORD + "\n").encode())
        proc.wait(10)
        while select.select([master], [], [], 0.1)[0]:
            out += os.read(master, 1024)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        os.close(slave)
    text = out.decode(errors="replace")
    assert proc.returncode == 0 and "created supervisor 'rudi'" in text, text
    assert answered == 2 and PASSWORD not in text  # hidden input: the terminal never shows it
    r = run_cli("user", "list", "--json", config=cfg)
    assert [u["role"] for u in json.loads(r.stdout) if u["username"] == "rudi"] == ["supervisor"]


def test_sites_from_registry_export_never_store_keys(tmp_path):
    cfg = _cfg(tmp_path)
    keys = [os.urandom(16) for _ in range(3)]
    recs = [DeviceRecord(device_id=0xAB000001 + i, key=keys[i], label=f"kasir {i}",
                         paths=["lora", "wifi"] if i else ["lora"], firmware="0.3.0",
                         site=SiteRecord(f"Toko {i}", "shop", f"Jl. Test {i}", -7.7 - i / 100,
                                         110.3, "Pak A", "+62 811"))
            for i in range(3)]
    export = tmp_path / "registry.json"
    write_export(export, recs)
    r = run_cli("sites", "import", str(export), "--json", config=cfg)
    assert json.loads(r.stdout) == {"source": "registry", "sites": 3, "devices": 3}
    for k in keys:
        assert k.hex() not in r.stdout + r.stderr
        for f in (tmp_path / "data").iterdir():
            assert k.hex().encode() not in f.read_bytes() and k not in f.read_bytes()
    listing = json.loads(run_cli("sites", "list", "--json", config=cfg).stdout)
    assert listing["total"] == 3
    assert "AB000002 kasir 1" in listing["sites"][1]["buttons"]
    # a broken export names the device and the field
    doc = json.loads(export.read_text())
    doc["devices"][1]["site"]["lat"] = 123
    export.write_text(json.dumps(doc))
    r = run_cli("sites", "import", str(export), config=cfg, check=False)
    assert r.returncode == 2 and "device AB000002: field 'site.lat'" in r.stderr


def test_sites_from_recorded_dispatch_bodies(tmp_path):
    """The reference receiver's --record lines (and plain bodies) register their sites."""
    from consolekit import body
    cfg = _cfg(tmp_path)
    rec = tmp_path / "dispatch.jsonl"
    rec.write_text("\n".join(json.dumps(x) for x in [
        {"status": 200, "verdict": "accepted", "body": body("panic", site=0)},
        {"status": 401, "verdict": "bad_token", "body": None},
        {"status": 200, "verdict": "accepted", "body": body("gateway_checkin")},
        body("test", device=0x0BBB0001, site=1)]) + "\n")
    r = run_cli("sites", "import", str(rec), "--json", config=cfg)
    assert json.loads(r.stdout) == {"source": "dispatch", "sites": 2, "devices": 2}


def test_plans_per_site_and_event(tmp_path):
    from consolekit import SITES
    cfg = _cfg(tmp_path)
    export = tmp_path / "registry.json"
    write_export(export, [DeviceRecord(device_id=0xCC000001, key=os.urandom(16),
                                       site=SiteRecord(**SITES[0]))])
    run_cli("sites", "import", str(export), config=cfg)
    plans = tmp_path / "plans.toml"
    plans.write_text(
        '[[plan]]\nevent = "panic"\nsteps = ["Radio unit 7", {en = "Call chief", '
        'id = "Telepon kapolsek"}]\n'
        f'[[plan]]\nevent = "panic"\nsite = "{SITES[0]["name"]}"\n'
        'steps = ["Unit from Pos Malioboro (200 m)", "Never phone the shop"]\n')
    r = run_cli("plan", "import", str(plans), "--json", config=cfg)
    assert [p["site"] for p in json.loads(r.stdout)] == ["*", SITES[0]["name"]]
    listed = json.loads(run_cli("plan", "list", "--json", config=cfg).stdout)
    site_plan = [p for p in listed if p["site"] == SITES[0]["name"]][0]
    assert site_plan["steps"][1] == {"en": "Never phone the shop", "id": "Never phone the shop"}
    default_tamper = [p for p in listed if p["event"] == "tamper"][0]
    assert default_tamper["source"] == "built-in"
    # errors name the plan and field
    plans.write_text('[[plan]]\nevent = "robbery"\nsteps = ["x"]\n')
    r = run_cli("plan", "import", str(plans), config=cfg, check=False)
    assert r.returncode == 2 and "plan #1: 'event' must be one of" in r.stderr
    plans.write_text('[[plan]]\nevent = "panic"\nsite = "Nowhere"\nsteps = ["x"]\n')
    r = run_cli("plan", "import", str(plans), config=cfg, check=False)
    assert r.returncode == 2 and "no site named 'Nowhere'" in r.stderr


def test_gateway_set_audit_export_and_selfsigned(tmp_path):
    cfg = _cfg(tmp_path)
    run_cli("user", "add", "siti", "--role", "admin", config=cfg,
            env={"PANICCONSOLE_PASSWORD": PASSWORD})
    run_cli("gateway", "set", "gw-north", "--name", "Utara", "--lat", "-7.75", "--lon",
            "110.37", config=cfg)
    gws = json.loads(run_cli("gateway", "list", "--json", config=cfg).stdout)
    assert gws[0]["gateway_id"] == "gw-north" and gws[0]["located"] == "set"
    r = run_cli("gateway", "set", "gw-north", "--lat", "1", config=cfg, check=False)
    assert r.returncode == 2 and "--lat and --lon go together" in r.stderr
    out = tmp_path / "audit.csv"
    run_cli("audit", "export", "--out", str(out), config=cfg)
    rows = out.read_text().splitlines()
    assert rows[0] == "seq,time_utc,user,role,action,alarm_id,detail,remote"
    assert any(",user_add," in x for x in rows) and any(",gateway_set," in x for x in rows)
    r = run_cli("cert", "selfsigned", "--out-dir", str(tmp_path / "tls"), "--host",
                "console.polsek.example")
    key = tmp_path / "tls" / "console.key"
    assert os.stat(key).st_mode & 0o777 == 0o600 and "ca_file" in r.stdout
    out = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                          str(tmp_path / "tls" / "console.crt")], capture_output=True, text=True)
    assert "DNS:console.polsek.example" in out.stdout
    r = run_cli("cert", "selfsigned", "--out-dir", str(tmp_path / "tls"), check=False)
    assert r.returncode == 2 and "--force" in r.stderr


def test_tools_refuse_a_missing_database(tmp_path):
    (tmp_path / "nothing-here").mkdir()
    cfg = _cfg(tmp_path / "nothing-here")
    r = run_cli("user", "list", config=cfg, check=False)
    assert r.returncode == 2 and "no console database here" in r.stderr
    assert not (tmp_path / "nothing-here" / "data").exists()


def test_every_panicconsole_command_line_shown_exists():
    """Each `panicconsole ...` line in the docs, README, help texts and messages names real
    subcommands and options (a dead hint at 3 a.m. is a dead end)."""
    import re

    import typer.main

    from panicconsole.cli import app
    root = Path(__file__).resolve().parents[2]
    tree = typer.main.get_command(app)
    files = [root / "docs" / "console.md", root / "README.md",
             *sorted((root / "console" / "panicconsole").glob("*.py"))]
    found = 0
    for f in files:
        text = f.read_text()
        if f.suffix == ".py":
            text = re.sub(r"[\"']\s*\n\s*f?[\"']", "", text)
        lines = re.findall(r"`(panicconsole [^`]+)`", text)
        lines += re.findall(r"^\s*(panicconsole [^\n#]+)", text, re.M)
        for line in lines:
            cmd = tree
            words = line.split()[1:]
            for w in words:
                if hasattr(cmd, "commands") and re.fullmatch(r"[a-z][a-z-]*", w):
                    assert w in cmd.commands, f"{f.name}: {line!r}: no command {w!r}"
                    cmd = cmd.commands[w]
                elif w.startswith("--"):
                    opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
                    assert w.split("=")[0] in opts | {"--help"}, f"{f.name}: {line!r}: {w}"
            found += 1
    assert found >= 20
