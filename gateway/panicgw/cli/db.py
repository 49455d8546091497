"""How `panicgw devices`/`events`/`outbox`/`monitor` find and open the gateway DB (contract C3).

Every one of them opens the DB the daemon opens, only through :mod:`panicgw.access`: the
path given with ``--gateway-db`` (alias ``--db``), else ``<[gateway] data_dir>/gateway.db``
of ``--config`` (default ``/etc/panicgw/gateway.toml`` or ``$PANICGW_CONFIG``). None of them
ever creates a DB: a mistyped path or a file that is not a gateway DB is an error naming the
fix, and leaves nothing behind. Only ``panicgw run`` (and ``panicgw setup``) create it.

On an installed Pi the config and the DB are the service user's (`panicgw setup`: config
0600 in a 0750 root:panicgw directory, DB 0600 in a 0700 directory), so the admin's own
account can reach neither. That is a permission error naming the user and the exact command
to run as it (``sudo -u panicgw ...``), never "no gateway config" or "no gateway DB". Root
may run them too: SQLite gives the -wal/-shm files it creates as root the DB's owner.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from panicgw import access
from panicgw import config as gwconfig
from panicgw.store import Store

CONFIG_HELP = ("Gateway TOML, the one `panicgw run --config` uses (its \\[gateway] data_dir "
               "holds the DB). Default: $PANICGW_CONFIG or /etc/panicgw/gateway.toml.")
DB_HELP = "The gateway DB itself (<data_dir>/gateway.db); overrides --config."


def config_path(config: Path | None) -> Path:
    """``--config`` or the default the daemon's unit uses."""
    return config if config is not None else access.default_config()


SERVICE_USER = access.SERVICE_USER
# The command to run instead, for the user who can: ``retry(user)``.
Retry = Callable[[str], str]


def user_name(uid: int) -> str:
    """``uid`` as sudo -u takes it, quoted for a shell (``'#uid'`` when it has no name)."""
    try:
        return shlex.quote(pwd.getpwuid(uid).pw_name)
    except KeyError:
        return shlex.quote(f"#{uid}")


def owner_of(path: Path) -> str:
    """Who may reach ``path``: its owner, else (this user cannot even look at it) the owner
    or group of its directory; :data:`SERVICE_USER` when those are root's. Quoted for a
    shell (a user without a name is ``'#uid'`` to sudo)."""
    for p, own in ((path, True), (path.parent, False)):
        try:
            st = p.stat()
        except OSError:
            continue
        if st.st_uid != 0:
            return user_name(st.st_uid)
        if not own and st.st_gid != 0:
            try:  # root:panicgw 0750, the config's directory: the group is the user's
                return shlex.quote(grp.getgrgid(st.st_gid).gr_name)
            except KeyError:
                break
        break
    return SERVICE_USER


def denied(path: Path, *, write: bool = False) -> bool:
    """True when this user may not read (``write``: and change) ``path``, or not even see
    it; False when it is missing or reachable (the caller's own checks then speak)."""
    try:
        path.stat()
    except PermissionError:
        return True
    except OSError:
        return False
    return not os.access(path, os.R_OK | (os.W_OK if write else 0))


def db_denied(db: Path, *, readonly: bool) -> bool:
    """:func:`denied` for a SQLite DB in WAL mode: a writer also needs its -wal and -shm, or
    the directory to create them in."""
    if denied(db, write=not readonly):
        return True
    if readonly or not db.exists():
        return False
    for suffix in ("-wal", "-shm"):
        side = Path(f"{db}{suffix}")
        if side.exists() and not os.access(side, os.R_OK | os.W_OK):
            return True
        if not side.exists() and not os.access(db.parent, os.W_OK | os.X_OK):
            return True
    return False


def _as_command_line() -> Retry:
    """The default retry: this command line as ``user``."""
    words = sys.argv[1:] if Path(sys.argv[0]).name == "panicgw" else ["..."]
    line = shlex.join(["panicgw", *words])
    return lambda user: f"sudo -u {user} {line}"


def _refuse(what: str, path: Path, retry: Retry | None, exit_code: int) -> None:
    user = owner_of(path)
    cmd = (retry or _as_command_line())(user)
    typer.echo(f"error: permission denied: {what} {path} is {user}'s and this account "
               f"cannot reach it (it holds device keys and secrets); run the command as "
               f"{user}: `{cmd}`", err=True)
    raise typer.Exit(exit_code)


def load_config(config: Path | None, exit_code: int,
                retry: Retry | None = None) -> gwconfig.Config:
    """The gateway config (``--config`` or the default), or a clear error and ``exit_code``;
    ``retry``: the exact command to name when this user may not read it."""
    path = config_path(config)
    if denied(path):
        _refuse("the gateway config", path, retry, exit_code)
    if not path.is_file():
        typer.echo(f"error: no gateway config at {path}: pass --config with the file "
                   "`panicgw run --config` uses (or --gateway-db with its database)", err=True)
        raise typer.Exit(exit_code)
    try:
        return gwconfig.load(path)
    except gwconfig.ConfigError as e:
        typer.echo(f"error: bad config: {e}", err=True)
        raise typer.Exit(exit_code) from None


def open_store(config: Path | None, db: Path | None, *, readonly: bool,
               config_exit: int, db_exit: int,
               retry: Retry | None = None) -> tuple[Store, gwconfig.Config | None]:
    """(opened Store, config or None when ``db`` was given). Never creates a DB. ``retry``:
    the exact command to name when this user may not reach the config or the DB."""
    cfg = None
    if db is None:
        cfg = load_config(config, config_exit, retry)
        db = cfg.db_path
    if db_denied(Path(db), readonly=readonly):
        _refuse("the gateway DB", Path(db), retry, db_exit)
    try:
        return access.open_db(db, readonly=readonly), cfg
    except access.AccessError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(db_exit) from None
