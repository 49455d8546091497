"""`panicgw events`: tail and search the gateway's stored events (read-only on the DB).

It opens the DB read-only, so it is safe beside a running daemon (WAL lets readers in while
the pipeline writes) and never changes anything a technician did not ask for.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from panicgw import config as gwconfig
from panicgw.store.inspect import Inspector, query_events

EXIT_OK = 0
EXIT_EMPTY = 1
EXIT_USAGE = 2
EXIT_DB = 3
KINDS = ("alarm", "cancel", "heartbeat", "test", "tamper")

_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*(ago)?\s*$", re.I)
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: str, now: float | None = None) -> float:
    """Epoch seconds from ``now``, a relative age (``15m``, ``2h``, ``3d``) or ISO 8601
    (``2026-11-28``, ``2026-11-28T14:05``, with or without zone: local time without)."""
    now = time.time() if now is None else now
    v = value.strip()
    if v.lower() == "now":
        return now
    m = _REL.match(v)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2).lower()]
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: use e.g. 15m, 2h, 3d (ago), 2026-11-28 or "
            "2026-11-28T14:05:00+07:00") from None
    return dt.timestamp()


def parse_device(value: str) -> int:
    """A device id as printed (0x0000BEEF), bare hex (0000beef) or decimal."""
    v = value.strip().lower()
    try:
        if v.startswith("0x"):
            n = int(v, 16)
        elif re.fullmatch(r"[0-9a-f]{8}", v) and not v.isdigit():
            n = int(v, 16)
        else:
            n = int(v, 10)
    except ValueError:
        raise ValueError(f"{value!r} is not a device id: use 0x0000BEEF or decimal") from None
    if not 0 <= n <= 0xFFFFFFFF:
        raise ValueError(f"device id {value!r} is out of range (32 bits)")
    return n


def fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_paths(recs: list[dict[str, Any]]) -> str:
    parts = []
    for r in recs:
        p = r["path"]
        if r.get("rssi") is not None:
            p += f" {r['rssi']:g}dBm"
        if r.get("snr") is not None:
            p += f"/{r['snr']:g}dB"
        parts.append(p)
    return ", ".join(parts) or "-"


def event_line(ev: dict[str, Any]) -> str:
    """One event on one line (``--follow``): time, kind, device, site, incident, paths."""
    dev = f"0x{ev['device_id']:08X}" + (f" {ev['label']}" if ev["label"] else "")
    return (f"{fmt_time(ev['received_at'])}  {ev['kind']:<9} {dev}  "
            f"{ev['site'] or '(unregistered)'}  {ev['incident_id'] or '-'}  "
            f"{ev['battery_mv']} mV  {fmt_paths(ev['receptions'])}")


def follow_events(db: sqlite3.Connection, filters: dict[str, Any], limit: int, as_json: bool,
                  interval_s: float) -> None:
    """The newest ``limit`` matches oldest first, then each new match as it is stored, until
    Ctrl-C (or SIGTERM). Polls the read-only DB: WAL readers never hold up the daemon."""
    import signal

    def show(ev: dict[str, Any]) -> None:
        typer.echo(json.dumps(ev) if as_json else event_line(ev))

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    rows = query_events(db, limit=limit, **filters)
    for ev in reversed(rows):
        show(ev)
    last = rows[0]["id"] if rows else Inspector(db).last_event_id()
    if not as_json:
        typer.echo("-- following new events (Ctrl-C to stop) --")
    try:
        while True:
            time.sleep(interval_s)
            for ev in query_events(db, limit=1000, after_id=last, **filters):
                show(ev)
                last = ev["id"]
    except KeyboardInterrupt:
        pass


def load_config_and_db(config: Path | None, db: Path | None = None
                       ) -> tuple[gwconfig.Config | None, sqlite3.Connection]:
    """Config (None when only ``db`` was given) and the read-only DB, or a clear error and
    exit code (events, monitor). Never creates a DB (contract C3)."""
    from panicgw.cli import db as cli_db

    store, cfg = cli_db.open_store(config, db, readonly=True, config_exit=EXIT_USAGE,
                                   db_exit=EXIT_DB)
    return cfg, store.db


def events(
    config: Path = typer.Option(None, "--config", "-c", envvar="PANICGW_CONFIG",
                                help="Gateway TOML file, as for `panicgw run` (default "
                                "/etc/panicgw/gateway.toml)."),
    gateway_db: Path = typer.Option(None, "--gateway-db", "--db",
                                    help="The gateway DB itself; overrides --config."),
    device: str = typer.Option(None, "--device", "-d",
                               help="Only this device: 0x0000BEEF, bare hex or decimal."),
    site: str = typer.Option(None, "--site", "-s",
                             help="Only sites whose name or address contains this text."),
    since: str = typer.Option(None, "--since",
                              help="From this time: 15m, 2h, 3d (ago) or ISO 2026-11-28T14:05."),
    until: str = typer.Option(None, "--until", help="Up to this time (same forms as --since)."),
    kind: str = typer.Option(None, "--kind", "-k",
                             help=f"Only this kind: {', '.join(KINDS)}."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=100000,
                              help="At most this many (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array for scripts "
                                 "(with --follow: one JSON object per line)."),
    follow: bool = typer.Option(False, "--follow", "-f",
                                help="Like tail -f: the newest matches oldest first, then each "
                                "new one as it is stored, one line each, until Ctrl-C."),
    interval: float = typer.Option(0.5, "--interval", min=0.05, max=60.0,
                                   help="With --follow: seconds between looks at the DB."),
) -> None:
    """Show stored events, newest first, with the paths each was heard on (RSSI/SNR).

    Examples: `panicgw events --kind alarm --since 1d`,
    `panicgw events --site "Toko Sinar" --json`, `panicgw events -d 0x0000BEEF -n 10`,
    `panicgw events --follow --kind alarm` (live; `panicgw monitor` also shows rejected
    frames).

    Exit codes: 0 events shown (or --follow stopped with Ctrl-C), 1 none matched, 2 bad
    arguments or config, 3 no database.
    """
    try:
        dev = parse_device(device) if device else None
        t0 = parse_time(since) if since else None
        t1 = parse_time(until) if until else None
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if kind is not None and kind.lower() not in KINDS:
        typer.echo(f"error: --kind {kind!r}: use one of {', '.join(KINDS)}", err=True)
        raise typer.Exit(EXIT_USAGE)
    if t0 is not None and t1 is not None and t0 > t1:
        typer.echo("error: --since is after --until", err=True)
        raise typer.Exit(EXIT_USAGE)
    _, db = load_config_and_db(config, gateway_db)
    filters: dict[str, Any] = {"device": dev, "site": site, "since": t0, "until": t1,
                               "kind": kind.lower() if kind else None}
    if follow:
        try:
            follow_events(db, filters, limit, as_json, interval)
        except sqlite3.Error as e:
            typer.echo(f"error: cannot read events: {e}", err=True)
            raise typer.Exit(EXIT_DB) from None
        finally:
            db.close()
        raise typer.Exit(EXIT_OK)
    try:
        rows = query_events(db, limit=limit, **filters)
    except sqlite3.Error as e:
        typer.echo(f"error: cannot read events: {e}", err=True)
        raise typer.Exit(EXIT_DB) from None
    finally:
        db.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=None))
        raise typer.Exit(EXIT_OK if rows else EXIT_EMPTY)
    if not rows:
        typer.echo("no events match")
        raise typer.Exit(EXIT_EMPTY)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} event(s), newest first")
    for col in ("time", "kind", "device", "site", "incident", "batt", "heard on"):
        table.add_column(col)
    style = {"alarm": "bold red", "tamper": "yellow", "test": "cyan", "cancel": "magenta"}
    for ev in rows:
        table.add_row(
            fmt_time(ev["received_at"]),
            f"[{style.get(ev['kind'], '')}]{ev['kind']}[/]" if ev["kind"] in style
            else ev["kind"],
            f"0x{ev['device_id']:08X}" + (f" {ev['label']}" if ev["label"] else ""),
            ev["site"] or "(unregistered)",
            ev["incident_id"] or "-",
            f"{ev['battery_mv']} mV",
            fmt_paths(ev["receptions"]),
        )
    Console().print(table)
