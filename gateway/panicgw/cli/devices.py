"""`panicgw devices`: the gateway's registry of buttons (list, show, import, export, remove,
rekey). Works on the gateway DB the daemon opens (found through panicgw.access, never
created here); a running daemon picks changes up within seconds.

Keys never appear on a command line or a screen: `rekey` takes a key from a key file, an
environment variable or a hidden prompt, or makes one and writes it to a 0600 key file.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
from pathlib import Path
from typing import Any

import typer

from panicgw import access, registry
from panicgw.cli import db as cli_db
from panicgw.store import Store
from panicproto import mac

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_STORE = 3

app = typer.Typer(
    help="List, show, import, export, remove and rekey registered buttons.",
    no_args_is_help=True,
)

CONFIG_OPT = typer.Option(None, "--config", "-c", envvar="PANICGW_CONFIG",
                          help=cli_db.CONFIG_HELP)
DB_OPT = typer.Option(None, "--gateway-db", "--db", help=cli_db.DB_HELP)
JSON_OPT = typer.Option(False, "--json", help="Print JSON for scripts.")


def _open(config: Path | None, db: Path | None, readonly: bool = False) -> Store:
    return cli_db.open_store(config, db, readonly=readonly, config_exit=EXIT_USAGE,
                             db_exit=EXIT_STORE)[0]


def _parse_id(text: str) -> int:
    """Device ids as printed on labels and by `devices list`: hex, optional 0x."""
    t = text.strip().lower().removeprefix("0x")
    try:
        value = int(t, 16)
    except ValueError:
        typer.echo(f"error: {text!r} is not a device id (hex, e.g. 0000BEEF)", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if not 0 <= value <= 0xFFFFFFFF or len(t) > 8:
        typer.echo(f"error: device id {text!r} is longer than 8 hex digits", err=True)
        raise typer.Exit(EXIT_USAGE)
    return value


def _row(rec: registry.DeviceRecord, state: Any) -> dict[str, Any]:
    d = rec.to_dict(with_key=False)
    d["device_id"] = f"{rec.device_id:08X}"
    if state is not None:
        d["state"] = {
            "last_heard": state.last_heard, "last_path": state.last_path,
            "rssi": state.last_rssi, "snr": state.last_snr, "battery_mv": state.battery_mv,
            "low_battery": state.low_battery, "supervision": state.supervision,
            "highest_counter": state.replay_highest if state.replay_highest >= 0 else None,
        }
    return d


@app.command("list")
def list_devices(config: Path = CONFIG_OPT, db: Path = DB_OPT, as_json: bool = JSON_OPT) -> None:
    """List registered buttons with site, paths and when each was last heard."""
    import time

    from rich.console import Console
    from rich.table import Table

    s = _open(config, db)
    try:
        states = s.device_states()
        rows = [_row(r, states.get(r.device_id)) for r in s.list_devices()]
    finally:
        s.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no devices registered (import some: panicgw devices import FILE)")
        return
    t = Table("device", "label", "site", "paths", "last heard", "battery", "supervision")
    now = time.time()
    for r in rows:
        st = r.get("state") or {}
        heard = st.get("last_heard")
        ago = f"{int(now - heard)} s ago" if heard else "never"
        batt = f"{st['battery_mv']} mV" if st.get("battery_mv") else "-"
        t.add_row(r["device_id"], r["label"], r["site"]["name"], ",".join(r["paths"]), ago,
                  batt, st.get("supervision", "-"))
    Console().print(t)


@app.command("show")
def show(device_id: str = typer.Argument(..., help="Device id, 8 hex digits (as on the label)."),
         config: Path = CONFIG_OPT, db: Path = DB_OPT, as_json: bool = JSON_OPT) -> None:
    """Show one button: site, contact, paths, state and its recent events (never its key)."""
    dev = _parse_id(device_id)
    s = _open(config, db)
    try:
        rec = s.get_device(dev)
        if rec is None:
            typer.echo(f"error: device {dev:08X} is not registered", err=True)
            raise typer.Exit(EXIT_NOT_FOUND)
        out = _row(rec, s.device_state(dev))
        out["recent_events"] = s.recent_events(10, dev)
    finally:
        s.close()
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    for k in ("device_id", "label", "paths", "supervision_s", "firmware", "key_gen"):
        typer.echo(f"{k:14} {out[k]}")
    for k, v in out["site"].items():
        typer.echo(f"site.{k:9} {v}")
    for k, v in (out.get("state") or {}).items():
        typer.echo(f"state.{k:8} {v}")
    for e in out["recent_events"]:
        typer.echo(f"event {e['kind']:9} counter 0x{e['counter']:08X} at {e['received_at']:.0f}"
                   f" incident {e['incident_id'] or '-'}")


IMPORT_FILE_HELP = ("Export file from `panictool provision`, or - to read it from stdin: "
                    f"`{access.import_command('today.json')}` (the config and DB are the "
                    f"{access.SERVICE_USER} user's; the file stays yours, read by your shell).")


def _import_as(file: Path, config: Path | None, db: Path | None, allow_older_key: bool,
               as_json: bool) -> cli_db.Retry:
    """The import as ``user`` would run it, the file on stdin (only its owner reads it)."""
    opts: list[str] = []
    if config is not None and config != access.DEFAULT_CONFIG:
        opts += ["--config", shlex.quote(str(config))]
    if db is not None:
        opts += ["--gateway-db", shlex.quote(str(db))]
    opts += ["--allow-older-key"] * allow_older_key + ["--json"] * as_json
    export = None if str(file) == "-" else file
    return lambda user: access.import_command(export, user, tuple(opts))


def _read_import(file: Path, retry: cli_db.Retry) -> list[registry.DeviceRecord]:
    """The records of ``file`` (``-``: stdin), or the error that says what to run."""
    try:
        if str(file) == "-":
            stdin = typer.get_binary_stream("stdin")
            if stdin.isatty():
                typer.echo("error: - reads the export file from stdin: `panicgw devices "
                           "import - < FILE`", err=True)
                raise typer.Exit(EXIT_USAGE)
            raw, source = stdin.read(), "stdin"
        else:
            try:
                raw, source = file.read_bytes(), str(file)
            except PermissionError:
                user = cli_db.user_name(os.geteuid())
                typer.echo(f"error: permission denied: {file} is not readable by {user} (an "
                           "export is 0600, its owner's); let your shell read it and give it "
                           f"on stdin: `{retry(user)}`", err=True)
                raise typer.Exit(EXIT_USAGE) from None
            except OSError as e:
                raise registry.RegistryError(f"cannot read {file}: {e.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise registry.RegistryError(f"{source}: not UTF-8 text") from None
        return registry.parse_export(text, source)
    except registry.RegistryError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


@app.command("import")
def import_(file: Path = typer.Argument(..., help=IMPORT_FILE_HELP),
            config: Path = CONFIG_OPT, db: Path = DB_OPT,
            allow_older_key: bool = typer.Option(
                False, "--allow-older-key",
                help="Replace a key even when the file's key generation is older than the "
                "gateway's (or the same with another key). Only when the button really has "
                "the file's key (`panictool verify` passes with it)."),
            as_json: bool = JSON_OPT) -> None:
    """Register (or update) every device in a panic-button-registry/1 file, all or nothing.

    On the gateway, as its admin: `sudo -u panicgw panicgw devices import - < today.json`.
    The gateway's config and DB belong to its service user (mode 0600), so the import runs
    as that user, and the export file (0600, yours) is read by your shell and given on
    stdin (-). Run as another user it fails with a permission error naming that command.

    A device whose key was replaced since the file was written (`panicgw devices rekey`,
    `panictool rekey`: the gateway's key generation is newer) is refused, as is a different
    key of the same generation: importing an old export would lock the button out.

    Exit codes: 0 imported, 1 refused (a key older than the gateway's; the message names
    the device and both generations), 2 bad file, arguments or config (or the config not
    readable by this user), 3 no gateway DB (or not reachable by this user).
    """
    retry = _import_as(file, config, db, allow_older_key, as_json)
    recs = _read_import(file, retry)
    s = cli_db.open_store(config, db, readonly=False, config_exit=EXIT_USAGE,
                          db_exit=EXIT_STORE, retry=retry)[0]
    try:
        s.upsert_devices(recs, allow_older_key=allow_older_key)
    except registry.KeyConflictError as e:
        if as_json:
            typer.echo(json.dumps({"imported": [], "refused": f"{e.device_id:08X}",
                                   "stored_key_gen": e.stored_gen, "file_key_gen": e.new_gen,
                                   "error": str(e)}))
        typer.echo(f"error: {file}: {e}; nothing was imported", err=True)
        raise typer.Exit(EXIT_NOT_FOUND) from None
    finally:
        s.close()
    ids = [f"{r.device_id:08X}" for r in recs]
    if as_json:
        typer.echo(json.dumps({"imported": ids}))
    else:
        typer.echo(f"imported {len(ids)} device(s): {', '.join(ids)}")


@app.command("export")
def export(file: Path = typer.Argument(..., help="Where to write (mode 0600: it holds keys)."),
           config: Path = CONFIG_OPT, db: Path = DB_OPT) -> None:
    """Write every registered device, with keys, to a file another gateway can import
    (overlapping gateways must know the same buttons)."""
    s = _open(config, db)
    try:
        recs = s.list_devices()
    finally:
        s.close()
    registry.write_export(file, recs)
    typer.echo(f"exported {len(recs)} device(s) to {file} (mode 0600: contains keys)")


@app.command("remove")
def remove(device_id: str = typer.Argument(..., help="Device id, 8 hex digits."),
           config: Path = CONFIG_OPT, db: Path = DB_OPT,
           yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Unregister a button: its frames are rejected from now on (its history stays)."""
    dev = _parse_id(device_id)
    if not yes and not typer.confirm(f"remove device {dev:08X}?"):
        raise typer.Exit(EXIT_USAGE)
    s = _open(config, db)
    try:
        ok = s.remove_device(dev)
    finally:
        s.close()
    if not ok:
        typer.echo(f"error: device {dev:08X} is not registered", err=True)
        raise typer.Exit(EXIT_NOT_FOUND)
    typer.echo(f"removed {dev:08X}")


KEY_ENV_DEFAULT = "PANICGW_DEVICE_KEY"


def _given_key(use_key: Path | None, key_env: str | None, prompt: bool,
               dev: int) -> bytes | None:
    """The key from exactly one source (file, environment, hidden prompt), or None."""
    given = [n for n, on in (("--use-key", use_key is not None),
                             ("--key-env", key_env is not None), ("--prompt-key", prompt)) if on]
    if len(given) > 1:
        typer.echo(f"error: give the key one way, not {' and '.join(given)}", err=True)
        raise typer.Exit(EXIT_USAGE)
    if use_key is not None:
        try:
            kf = registry.read_key_file_full(use_key)
        except registry.RegistryError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        if kf.device_id is not None and kf.device_id != dev:
            typer.echo(f"error: {use_key} holds the key of device {kf.device_id:08X}, not "
                       f"{dev:08X}", err=True)
            raise typer.Exit(EXIT_USAGE)
        return kf.key
    if key_env is not None:
        raw = os.environ.get(key_env, "").strip()
        what = f"environment variable {key_env}"
    elif prompt:
        raw = typer.prompt(f"new key for {dev:08X} (32 hex digits, not shown)",
                           hide_input=True, confirmation_prompt=True).strip()
        what = "the key typed"
    else:
        return None
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        key = b""
    if len(key) != 16:
        typer.echo(f"error: {what} must hold 32 hex digits", err=True)
        raise typer.Exit(EXIT_USAGE)
    return key


@app.command("rekey")
def rekey(device_id: str = typer.Argument(..., help="Device id, 8 hex digits."),
          key_file: Path = typer.Option(
              None, "--key-file", help="Write the key (made here, or given) with its key "
              "generation to this file (0600) for `panictool rekey --use-key FILE`."),
          use_key: Path = typer.Option(
              None, "--use-key", help="Take the key from this file: a key file (JSON, from "
              "`panictool`) or one holding just the 32 hex digits."),
          key_env: str = typer.Option(
              None, "--key-env", metavar="NAME", help="Take the key (32 hex digits) from "
              f"this environment variable (e.g. {KEY_ENV_DEFAULT})."),
          prompt_key: bool = typer.Option(
              False, "--prompt-key", help="Type the key (32 hex digits) at a hidden prompt."),
          config: Path = CONFIG_OPT, db: Path = DB_OPT, as_json: bool = JSON_OPT) -> None:
    """Give a button a new key, keeping its id, site and history; its key generation goes
    up by one (older exports of it are then refused by `panicgw devices import`) and its
    replay window starts over, because `panictool rekey` restarts the button's counter with
    the new key (no frame made with an older key passes the new key's tag). That is also
    the way out for a button at the top of its counter space (`panicgw diag`,
    devices.counter_space).

    The key is never printed and never taken as a command-line argument (shell history and
    `ps` would show it). Either a new random key is made and written to --key-file, for
    `panictool rekey --use-key FILE` at the button; or the key the button already has is
    given from a file (--use-key), an environment variable (--key-env) or a hidden prompt
    (--prompt-key). Or run `panictool rekey --gateway-db` on the Pi instead of this
    command. Until both ends have the key the button's frames are rejected as bad_tag.

    Exit codes: 0 rekeyed, 1 no such device, 2 bad arguments or key, 3 no gateway DB.
    """
    dev = _parse_id(device_id)
    given = _given_key(use_key, key_env, prompt_key, dev)
    if given is None and key_file is None:
        typer.echo("error: a new key must go somewhere: add --key-file FILE (then "
                   "`panictool rekey --use-key FILE` at the button), or give the key the "
                   "button has with --use-key FILE / --key-env NAME / --prompt-key", err=True)
        raise typer.Exit(EXIT_USAGE)
    new = given if given is not None else secrets.token_bytes(16)
    s = _open(config, db)
    try:
        current = s.get_device(dev)
        if current is None:
            typer.echo(f"error: device {dev:08X} is not registered", err=True)
            raise typer.Exit(EXIT_NOT_FOUND)
        if mac.equal(current.key, new):
            # Nothing to do, and nothing may be done: restarting the window of the key in
            # use would let frames recorded under it be replayed.
            if key_file is not None:
                try:
                    registry.write_key_file(key_file, dev, new, key_gen=current.key_gen)
                except OSError as e:
                    typer.echo(f"error: cannot write {key_file}: {e.strerror}", err=True)
                    raise typer.Exit(EXIT_USAGE) from None
            if as_json:
                typer.echo(json.dumps({"device_id": f"{dev:08X}", "key_gen": current.key_gen,
                                       "changed": False,
                                       "key_file": str(key_file) if key_file else None}))
            else:
                typer.echo(f"device {dev:08X} already has this key (key generation "
                           f"{current.key_gen}): nothing changed")
            return
        if key_file is not None:  # the file first: a key only in the DB would lock it out
            try:
                registry.write_key_file(key_file, dev, new, key_gen=current.key_gen + 1)
            except OSError as e:
                typer.echo(f"error: cannot write {key_file}: {e.strerror}; nothing changed",
                           err=True)
                raise typer.Exit(EXIT_USAGE) from None
        try:
            gen = s.rekey(dev, new)
        except BaseException:
            if key_file is not None:
                key_file.unlink(missing_ok=True)
            raise
        if gen is None:  # removed in between
            if key_file is not None:
                key_file.unlink(missing_ok=True)
            typer.echo(f"error: device {dev:08X} is not registered", err=True)
            raise typer.Exit(EXIT_NOT_FOUND)
        if key_file is not None and gen != current.key_gen + 1:  # a concurrent rekey
            registry.write_key_file(key_file, dev, new, key_gen=gen)
    finally:
        s.close()
    if as_json:
        typer.echo(json.dumps({"device_id": f"{dev:08X}", "key_gen": gen,
                               "key_file": str(key_file) if key_file else None}))
    elif key_file is not None and given is None:
        typer.echo(f"device {dev:08X} rekeyed (key generation {gen}, replay window "
                   f"restarted); key in {key_file} (0600): put it on the button with "
                   f"`panictool rekey --use-key {key_file}` (which restarts its counter)")
    else:
        typer.echo(f"device {dev:08X} rekeyed (key generation {gen}, replay window "
                   "restarted)"
                   + (f"; key also in {key_file} (0600)" if key_file is not None else ""))
