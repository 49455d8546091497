"""`panicgw devices`: the gateway's registry of buttons (list, show, import, export, remove,
rekey). Works on the gateway DB directly (a running daemon picks changes up within seconds).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import typer

from panicgw import config as config_mod
from panicgw import registry
from panicgw.store import Store, StoreError

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_STORE = 3

app = typer.Typer(
    help="List, show, import, export, remove and rekey registered buttons.",
    no_args_is_help=True,
)

CONFIG_OPT = typer.Option(
    None, "--config", "-c", help="Gateway TOML (its \\[gateway] data_dir holds the DB)."
)
DB_OPT = typer.Option(None, "--db", help="Gateway DB path (overrides --config).")
JSON_OPT = typer.Option(False, "--json", help="Print JSON for scripts.")


def _open(config: Path | None, db: Path | None) -> Store:
    try:
        path = db if db is not None else config_mod.load(config).db_path
        return Store(path)
    except config_mod.ConfigError as e:
        typer.echo(f"error: bad config: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except StoreError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_STORE) from None


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
    for k in ("device_id", "label", "paths", "supervision_s", "firmware"):
        typer.echo(f"{k:14} {out[k]}")
    for k, v in out["site"].items():
        typer.echo(f"site.{k:9} {v}")
    for k, v in (out.get("state") or {}).items():
        typer.echo(f"state.{k:8} {v}")
    for e in out["recent_events"]:
        typer.echo(f"event {e['kind']:9} counter 0x{e['counter']:08X} at {e['received_at']:.0f}"
                   f" incident {e['incident_id'] or '-'}")


@app.command("import")
def import_(file: Path = typer.Argument(..., help="Export file from `panictool provision`."),
            config: Path = CONFIG_OPT, db: Path = DB_OPT, as_json: bool = JSON_OPT) -> None:
    """Register (or update) every device in a panic-button-registry/1 file, all or nothing."""
    try:
        recs = registry.read_export(file)
    except registry.RegistryError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    s = _open(config, db)
    try:
        s.upsert_devices(recs)
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


@app.command("rekey")
def rekey(device_id: str = typer.Argument(..., help="Device id, 8 hex digits."),
          key: str = typer.Option(None, "--key",
                                  help="New key, 32 hex digits; omitted: a random one is made"),
          key_file: Path = typer.Option(
              None, "--key-file", help="Write the generated key to this file (0600) for "
              "`panictool rekey --use-key FILE` instead of printing it."),
          reset_counter: bool = typer.Option(
              False, "--reset-counter", help="Also forget the replay window (re-flashed button)."),
          config: Path = CONFIG_OPT, db: Path = DB_OPT, as_json: bool = JSON_OPT) -> None:
    """Give a button a new key, keeping its id, site and history. Put the same key on the
    button with `panictool rekey --use-key FILE` (from --key-file here), or run
    `panictool rekey --gateway-db` on the Pi instead of this command. Until both ends
    have it, the button's frames are rejected as bad_tag."""
    dev = _parse_id(device_id)
    generated = key is None
    try:
        new = secrets.token_bytes(16) if generated else bytes.fromhex(key)
        if len(new) != 16:
            raise ValueError
    except ValueError:
        typer.echo("error: --key must be 32 hex digits", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if key_file is not None and not generated:
        typer.echo("error: --key-file writes a generated key; it does not go with --key",
                   err=True)
        raise typer.Exit(EXIT_USAGE)
    s = _open(config, db)
    if key_file is not None:  # the file first: a key only in the DB would lock the button out
        try:
            registry.write_key_file(key_file, dev, new)
        except OSError as e:
            s.close()
            typer.echo(f"error: cannot write {key_file}: {e.strerror}; nothing changed",
                       err=True)
            raise typer.Exit(EXIT_USAGE) from None
    try:
        ok = s.rekey(dev, new, reset_counter)
    except BaseException:
        if key_file is not None:
            key_file.unlink(missing_ok=True)
        raise
    finally:
        s.close()
    if not ok:
        if key_file is not None:
            key_file.unlink(missing_ok=True)
        typer.echo(f"error: device {dev:08X} is not registered", err=True)
        raise typer.Exit(EXIT_NOT_FOUND)
    if key_file is not None:
        if as_json:
            typer.echo(json.dumps({"device_id": f"{dev:08X}", "key": None,
                                   "key_file": str(key_file)}))
        else:
            typer.echo(f"device {dev:08X} rekeyed; key in {key_file} (0600): put it on the "
                       f"button with `panictool rekey --use-key {key_file}`")
        return
    if as_json:
        typer.echo(json.dumps({"device_id": f"{dev:08X}",
                               "key": new.hex() if generated else None}))
    elif generated:
        typer.echo(f"device {dev:08X} new key: {new.hex()}")
    else:
        typer.echo(f"device {dev:08X} rekeyed")
