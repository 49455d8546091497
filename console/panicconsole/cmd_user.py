"""`panicconsole user`: accounts (operator, supervisor, admin).

Passwords never go on the command line (it is visible in `ps` and shell history): they come
from a hidden prompt, a file (--password-file) or the PANICCONSOLE_PASSWORD variable.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import typer

from panicconsole import auth
from panicconsole.alarms import audit
from panicconsole.common import (
    CONFIG_OPTION,
    EXIT_FAILED,
    emit_json,
    fail,
    load_config,
    open_db,
    transaction,
)

ENV_PASSWORD = "PANICCONSOLE_PASSWORD"

app = typer.Typer(help="Create and manage the console's accounts.", no_args_is_help=True)

PASSWORD_FILE = typer.Option(
    None, "--password-file", dir_okay=False,
    help=f"Read the password from this file's first line (else ${ENV_PASSWORD}, else a hidden "
         "prompt). Never type it on the command line.")


def _password(path: Path | None, min_len: int) -> str:
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            fail(f"cannot read {path}: {e.strerror}")
        pw = lines[0] if lines else ""
    elif os.environ.get(ENV_PASSWORD):
        pw = os.environ[ENV_PASSWORD]
    elif sys.stdin.isatty():
        pw = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        fail(f"no terminal to ask the password on: use --password-file FILE or ${ENV_PASSWORD}")
    try:
        auth.check_password_rules(pw, min_len)
    except auth.AccountError as e:
        fail(str(e))
    return pw


@app.command("add")
def add(username: str = typer.Argument(..., help="Sign-in name (letters, digits, . _ - @)."),
        role: str = typer.Option("operator", "--role", "-r",
                                 help="operator (works alarms), supervisor (+ escalations, "
                                      "audit export) or admin (+ accounts, dispatch log)."),
        name: str = typer.Option("", "--name", help="Full name shown to colleagues."),
        lang: str = typer.Option("", "--lang", help="id (Bahasa Indonesia) or en; default: "
                                                    "[console] language."),
        password_file: Path = PASSWORD_FILE,
        config: Path = CONFIG_OPTION,
        json_out: bool = typer.Option(False, "--json", help="Print the new account as JSON.")
        ) -> None:
    """Create an account, e.g. the first admin: `panicconsole user add siti --role admin`.

    Creates the database if this is a fresh install. Exit codes: 0 created, 2 bad input
    (the user exists, a weak password, an unknown role).
    """
    cfg = load_config(config)
    pw = _password(password_file, cfg.security["min_password_len"])
    conn = open_db(cfg, create=True)
    try:
        with transaction(conn):
            uid = auth.add_user(conn, username, pw, role, display_name=name,
                                lang=lang or cfg.console["language"],
                                min_len=cfg.security["min_password_len"])
            audit.record(conn, time.time(), {"username": "cli", "role": "admin"},
                         "user_add", None, f"{username} ({role})")
    except auth.AccountError as e:
        fail(str(e))
    finally:
        conn.close()
    if json_out:
        emit_json({"id": uid, "username": username, "role": role})
    else:
        typer.echo(f"created {role} {username!r}")


@app.command("list")
def list_(config: Path = CONFIG_OPTION,
          json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Every account with its role, language and whether it is disabled."""
    cfg = load_config(config)
    conn = open_db(cfg)
    try:
        rows = [dict(r) for r in conn.execute(
            "SELECT username, display_name, role, lang, disabled, created_at FROM users "
            "ORDER BY username")]
        online = dict(conn.execute("SELECT u.username, COUNT(*) FROM sessions s JOIN users u "
                                   "ON u.id = s.user_id GROUP BY u.username").fetchall())
    finally:
        conn.close()
    for r in rows:
        r["sessions"] = online.get(r["username"], 0)
    if json_out:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no accounts yet: panicconsole user add NAME --role admin")
    for r in rows:
        typer.echo(f"{r['username']:<20} {r['role']:<10} {r['lang']}  "
                   f"{'DISABLED ' if r['disabled'] else ''}{r['display_name']}"
                   f"{'  (' + str(r['sessions']) + ' sessions)' if r['sessions'] else ''}")


@app.command("passwd")
def passwd(username: str = typer.Argument(..., help="The account."),
           password_file: Path = PASSWORD_FILE,
           config: Path = CONFIG_OPTION) -> None:
    """Set a new password (ends that user's open sessions). Exit 2: no such user."""
    cfg = load_config(config)
    pw = _password(password_file, cfg.security["min_password_len"])
    conn = open_db(cfg)
    try:
        with transaction(conn):
            auth.set_password(conn, username, pw, cfg.security["min_password_len"])
            audit.record(conn, time.time(), {"username": "cli", "role": "admin"}, "user_edit",
                         None, f"{username}: password reset")
    except auth.AccountError as e:
        fail(str(e))
    finally:
        conn.close()
    typer.echo(f"password of {username!r} changed; their sessions ended")


@app.command("set")
def set_(username: str = typer.Argument(..., help="The account."),
         role: str = typer.Option(None, "--role", help="operator, supervisor or admin."),
         disable: bool = typer.Option(False, "--disable", help="Block sign-in, end sessions."),
         enable: bool = typer.Option(False, "--enable", help="Allow sign-in again."),
         lang: str = typer.Option(None, "--lang", help="id or en."),
         config: Path = CONFIG_OPTION) -> None:
    """Change an account's role, language, or block it. Exit 2: bad input, 1: no such user."""
    if disable and enable:
        fail("--disable and --enable contradict each other")
    if role is not None and role not in auth.ROLES:
        fail(f"--role must be one of {', '.join(auth.ROLES)}")
    if lang is not None and lang not in auth.LANGS:
        fail("--lang must be id or en")
    if role is None and lang is None and not disable and not enable:
        fail("nothing to change: give --role, --lang, --disable or --enable")
    cfg = load_config(config)
    conn = open_db(cfg)
    try:
        with transaction(conn):
            row = conn.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                typer.echo(f"error: no user {username!r} (see panicconsole user list)", err=True)
                raise typer.Exit(EXIT_FAILED)
            done = []
            if role is not None:
                conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, row[0]))
                done.append(f"role {role}")
            if lang is not None:
                conn.execute("UPDATE users SET lang = ? WHERE id = ?", (lang, row[0]))
                done.append(f"language {lang}")
            if disable or enable:
                conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disable), row[0]))
                if disable:
                    conn.execute("DELETE FROM sessions WHERE user_id = ?", (row[0],))
                done.append("disabled" if disable else "enabled")
            audit.record(conn, time.time(), {"username": "cli", "role": "admin"}, "user_edit",
                         None, f"{username}: {', '.join(done)}")
    finally:
        conn.close()
    typer.echo(f"{username}: {', '.join(done)}")
