"""`panicgw monitor`: frames as they are heard (path, RSSI/SNR, verdict) and rejections, live.

The daemon's status API has no stream of frames, so this follows the DB (read-only, safe
beside the daemon thanks to WAL): every reception row is one heard copy of a frame, stored
or duplicate; rejected frames are never stored, so they show as per-reason counter deltas
(from the status API when the daemon runs, as it counts before its next commit; else from
the DB's rejection counters).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import time
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

import typer

from panicgw import config as gwconfig
from panicgw.cmd_events import EXIT_DB, EXIT_USAGE, fmt_time, load_config_and_db, parse_device

FRAME_SQL = (
    "SELECT r.id, r.at, r.path, r.rssi, r.snr, r.duplicate, e.device_id, e.counter, e.kind, "
    "e.incident_id, e.battery_mv, e.attempt, d.label, s.name FROM receptions r "
    "JOIN events e ON e.id = r.event_id LEFT JOIN devices d ON d.device_id = e.device_id "
    "LEFT JOIN sites s ON s.id = d.site_id WHERE r.id > ? ORDER BY r.id LIMIT 1000")


class Follower:
    """Yields new frames (receptions) and rejection deltas since the last poll."""

    def __init__(self, db: sqlite3.Connection, cfg: gwconfig.Config, device: int | None,
                 history: int) -> None:
        self.db = db
        self.cfg = cfg
        self.device = device
        row = db.execute("SELECT coalesce(max(id), 0) FROM receptions").fetchone()
        self.last_id = max(0, int(row[0]) - history)
        self.status: dict[str, Any] | None = None
        self.source, self.rejections = self._rejection_counts()

    def _status(self) -> dict[str, Any] | None:
        from panicgw.diag import status_endpoint

        ep = status_endpoint(self.cfg)
        if ep is None:
            return None
        host, port = ep
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/v1/status", timeout=1.0) as r:
                doc = json.loads(r.read(2_000_000))
            return doc if isinstance(doc, dict) else None
        except (OSError, ValueError):
            return None

    def _rejection_counts(self) -> tuple[str, dict[str, int]]:
        """(source, totals per reason): the running daemon's live counters (they include
        rejections not committed yet), else the DB's stored totals."""
        self.status = self._status()
        live = (self.status or {}).get("rejections")
        if isinstance(live, dict):
            return (f"daemon:{(self.status or {}).get('pid')}",
                    {str(r): int(n) for r, n in live.items() if isinstance(n, int)})
        return "db", {r: int(n) for r, n in self.db.execute("SELECT reason, count FROM rejections")}

    def poll(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for (rid, at, path, rssi, snr, dup, dev, ctr, kind, inc, mv, attempt, label,
             site) in self.db.execute(FRAME_SQL, (self.last_id,)).fetchall():
            self.last_id = rid
            if self.device is not None and dev != self.device:
                continue
            out.append({"type": "frame", "at": at, "path": path, "rssi": rssi, "snr": snr,
                        "verdict": "duplicate" if dup else "stored", "device_id": dev,
                        "device": f"0x{dev:08X}", "label": label, "site": site, "kind": kind,
                        "counter": ctr, "attempt": attempt, "battery_mv": mv,
                        "incident_id": inc})
        source, counts = self._rejection_counts()
        now = time.time()
        for reason, total in sorted(counts.items()):
            delta = total - self.rejections.get(reason, 0)
            if delta > 0 and source == self.source:  # a new source (daemon restart) rebases
                out.append({"type": "rejected", "at": now, "reason": reason, "count": delta,
                            "total": total})
        self.source, self.rejections = source, counts
        return out


def _line(item: dict[str, Any]) -> tuple[str, ...]:
    if item["type"] == "rejected":
        return (fmt_time(item["at"]), "-", "-", f"[red]REJECTED {item['reason']}[/]",
                f"+{item['count']} (total {item['total']})", "", "")
    sig = "-"
    if item["rssi"] is not None:
        sig = f"{item['rssi']:g} dBm" + (f" / {item['snr']:g} dB" if item["snr"] is not None
                                         else "")
    verdict = "[green]stored[/]" if item["verdict"] == "stored" else "[dim]duplicate[/]"
    kind = f"[bold red]{item['kind']}[/]" if item["kind"] == "alarm" else item["kind"]
    return (fmt_time(item["at"]), item["path"], sig, verdict, kind,
            f"{item['device']} {item['label'] or ''}".strip(), item["site"] or "?")


def monitor(
    config: Path = typer.Option(None, "--config", "-c", envvar="PANICGW_CONFIG",
                                help="Gateway TOML file (as for `panicgw run`)."),
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
    (`rejected bad_tag`) or a weak link (low RSSI/SNR).

    With --json the first line is {"type": "monitor", ...} (the starting point); then one
    {"type": "frame", ...} or {"type": "rejected", ...} object per line.

    Exit codes: 0 stopped (Ctrl-C or --count reached), 2 bad arguments or config, 3 no DB.
    """
    try:
        dev = parse_device(device) if device else None
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    cfg, db = load_config_and_db(config)

    def _term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    shown = 0
    try:
        follower = Follower(db, cfg, dev, history)
        if as_json:
            # First line: where we start, so a script knows anything after it will be shown.
            print(json.dumps({"type": "monitor", "db": str(cfg.db_path),
                              "after_reception": follower.last_id,
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
