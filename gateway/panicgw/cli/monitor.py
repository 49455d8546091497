"""`panicgw monitor`: frames as they are heard (path, RSSI/SNR, verdict) and rejections, live.

Parsing and printing only: what is followed, from the daemon or the DB, is
:class:`panicgw.diag.follow.Follower`.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import time
from collections import deque
from pathlib import Path
from typing import Any

import typer

from panicgw.cli.events import EXIT_DB, EXIT_USAGE, fmt_time, load_config_and_db, parse_device
from panicgw.diag.follow import Follower
from panicgw.store.inspect import Inspector


def _line(item: dict[str, Any]) -> tuple[str, ...]:
    if item["type"] == "rejected" and "total" in item:  # a counter delta, not one frame
        return (fmt_time(item["at"]), "-", "-", f"[red]REJECTED {item['reason']}[/]",
                f"+{item['count']} (total {item['total']})", "", "")
    sig = "-"
    if item["rssi"] is not None:
        sig = f"{item['rssi']:g} dBm" + (f" / {item['snr']:g} dB" if item["snr"] is not None
                                         else "")
    if item["type"] == "rejected":
        who = f"{item['device'] or '?'} {item['label'] or ''}".strip()
        return (fmt_time(item["at"]), item["path"] or "-", sig,
                f"[red]REJECTED {item['reason']}[/]", item["kind"] or "?", who,
                item["site"] or "?")
    verdict = "[green]stored[/]" if item["verdict"] == "stored" else "[dim]duplicate[/]"
    kind = f"[bold red]{item['kind']}[/]" if item["kind"] == "alarm" else item["kind"]
    return (fmt_time(item["at"]), item["path"], sig, verdict, kind,
            f"{item['device']} {item['label'] or ''}".strip(), item["site"] or "?")


def monitor(
    config: Path = typer.Option(None, "--config", "-c", envvar="PANICGW_CONFIG",
                                help="Gateway TOML file, as for `panicgw run` (default "
                                "/etc/panicgw/gateway.toml)."),
    device: str = typer.Option(None, "--device", "-d", help="Only frames of this device."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line, for scripts."),
    interval: float = typer.Option(0.5, "--interval", min=0.05, max=60.0,
                                   help="Seconds between polls."),
    history: int = typer.Option(0, "--history", min=0, max=10000,
                                help="Also show this many frames heard before starting."),
    count: int = typer.Option(0, "--count", min=0,
                              help="Exit after this many lines (0: run until Ctrl-C)."),
    rows: int = typer.Option(30, "--rows", min=5, max=1000,
                             help="Lines kept on screen in the live view."),
) -> None:
    """Watch frames arrive live: time, path (lora/wifi), RSSI/SNR, verdict (stored,
    duplicate, rejected with reason), kind, device and site. Ctrl-C exits.

    Use it during installation with a TEST press, or to find a button with a bad key
    (`rejected bad_tag`), a rolled-back counter (`rejected replay`) or a weak link (low
    RSSI/SNR). With the daemon running, rejected frames name the device they claim and
    --device shows that device's rejections too; with it stopped, the DB only has
    per-reason rejection counts.

    With --json the first line is {"type": "monitor", "frames_from": "daemon"|"db", ...}
    (the starting point); then one {"type": "frame", ...} or {"type": "rejected", ...}
    object per line (a rejected frame has device_id, path, rssi, counter, reason; a
    counter delta has reason, count, total).

    Exit codes: 0 stopped (Ctrl-C or --count reached), 2 bad arguments or config, 3 no DB.
    """
    try:
        dev = parse_device(device) if device else None
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    cfg, db = load_config_and_db(config)  # the config: monitor also asks the daemon
    assert cfg is not None

    def _term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    shown = 0
    try:
        follower = Follower(Inspector(db), cfg, dev, history)
        if as_json:
            # First line: where we start, so a script knows anything after it will be shown.
            print(json.dumps({"type": "monitor", "db": str(cfg.db_path),
                              "after_reception": follower.last_id,
                              "frames_from": follower.frames_from,
                              "after_seq": follower.since,
                              "rejections_from": follower.source.split(":")[0]}), flush=True)
            while True:
                for item in follower.poll():
                    print(json.dumps(item), flush=True)
                    shown += 1
                    if count and shown >= count:
                        return
                time.sleep(interval)
        from rich.console import Console, Group
        from rich.live import Live
        from rich.table import Table
        from rich.text import Text

        lines: deque[tuple[str, ...]] = deque(maxlen=rows)
        counters = {"stored": 0, "duplicate": 0, "rejected": 0}

        def render() -> Group:
            table = Table(expand=True)
            for col in ("time", "path", "RSSI / SNR", "verdict", "kind", "device", "site"):
                table.add_column(col)
            for ln in lines:
                table.add_row(*ln)
            st = follower.status
            bridge = ((st or {}).get("bridge") or {}).get("state", "?") if st else "daemon not"\
                " running"
            head = Text(f"panicgw monitor  {cfg.db_path}  bridge: {bridge}  stored "
                        f"{counters['stored']}  duplicate {counters['duplicate']}  rejected "
                        f"{counters['rejected']}  (Ctrl-C to stop)", style="bold")
            return Group(head, table)

        with Live(render(), console=Console(), refresh_per_second=4) as live:
            while True:
                for item in follower.poll():
                    lines.append(_line(item))
                    if item["type"] == "frame":
                        counters[item["verdict"]] += 1
                    else:
                        counters["rejected"] += item["count"]
                    shown += 1
                live.update(render())
                if count and shown >= count:
                    return
                time.sleep(interval)
    except KeyboardInterrupt:
        return
    except sqlite3.Error as e:
        typer.echo(f"error: reading {cfg.db_path} failed: {e}", err=True)
        raise typer.Exit(EXIT_DB) from None
    finally:
        with contextlib.suppress(sqlite3.Error):
            db.close()
