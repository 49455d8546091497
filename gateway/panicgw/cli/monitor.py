"""`panicgw monitor`: frames as they are heard (path, RSSI/SNR, verdict) and rejections, live.

With the daemon running it follows the daemon's ``GET /v1/frames`` (panicgw.recent): every
judged frame with its verdict, including rejected ones attributed to the device they claim
(bad_tag, replay, unknown_device), so ``--device`` finds the button with the wrong key.
Rejections that never became a frame (http_*, link_*) show as counter deltas from
``/v1/status``. With the daemon stopped it follows the DB (read-only, safe beside the
daemon thanks to WAL): every reception row is one heard copy of a stored frame; rejected
frames are never stored, so they show as per-reason counter deltas of the DB's totals.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import time
import urllib.parse
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

import typer

from panicgw import config as gwconfig
from panicgw.cli.events import EXIT_DB, EXIT_USAGE, fmt_time, load_config_and_db, parse_device
from panicgw.pipeline.recent import FRAME_REASONS, MAX_LIMIT

FRAME_SQL = (
    "SELECT r.id, r.at, r.path, r.rssi, r.snr, r.duplicate, e.device_id, e.counter, e.kind, "
    "e.incident_id, e.battery_mv, e.attempt, d.label, s.name FROM receptions r "
    "JOIN events e ON e.id = r.event_id LEFT JOIN devices d ON d.device_id = e.device_id "
    "LEFT JOIN sites s ON s.id = d.site_id WHERE r.id > ? ORDER BY r.id LIMIT 1000")
LABEL_SQL = ("SELECT d.label, s.name FROM devices d JOIN sites s ON s.id = d.site_id "
             "WHERE d.device_id = ?")


class Follower:
    """Yields new frames and rejections since the last poll, from the running daemon's
    recent-frames API when it answers, else from the DB (switching as the daemon starts
    and stops, without showing a frame twice)."""

    def __init__(self, db: sqlite3.Connection, cfg: gwconfig.Config, device: int | None,
                 history: int) -> None:
        self.db = db
        self.cfg = cfg
        self.device = device
        self.status: dict[str, Any] | None = None
        self._labels: dict[int, tuple[str | None, str | None]] = {}
        self.daemon_pid: Any = None  # set while following a daemon's /v1/frames
        self.since = 0
        self.shown_until = time.time()  # newest time shown: watermark when switching source
        row = db.execute("SELECT coalesce(max(id), 0) FROM receptions").fetchone()
        self.last_id = max(0, int(row[0]) - history)
        self._backlog: list[dict[str, Any]] = []
        self.source, self.rejections = self._rejection_counts()
        if self.source != "db":
            ring = self._frames(0)
            if ring is not None:
                self.daemon_pid = (self.status or {}).get("pid")
                items = ring["frames"]
                self._backlog = [self._item(e) for e in items[-history:]] if history else []
                self.since = int(ring["next"])

    @property
    def frames_from(self) -> str:
        return "daemon" if self.daemon_pid is not None else "db"

    def _get(self, path: str) -> dict[str, Any] | None:
        from panicgw.diag import status_endpoint

        ep = status_endpoint(self.cfg)
        if ep is None:
            return None
        host, port = ep
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=1.0) as r:
                doc = json.loads(r.read(4_000_000))
            return doc if isinstance(doc, dict) else None
        except (OSError, ValueError):
            return None

    def _frames(self, since: int) -> dict[str, Any] | None:
        q: dict[str, Any] = {"since": since, "limit": MAX_LIMIT}
        if self.device is not None:
            q["device"] = f"{self.device:08X}"
        doc = self._get("/v1/frames?" + urllib.parse.urlencode(q))
        if doc is None or not isinstance(doc.get("frames"), list):
            return None
        return doc

    def _rejection_counts(self) -> tuple[str, dict[str, int]]:
        """(source, totals per reason): the running daemon's live counters (they include
        rejections not committed yet), else the DB's stored totals."""
        self.status = self._get("/v1/status")
        live = (self.status or {}).get("rejections")
        if isinstance(live, dict):
            return (f"daemon:{(self.status or {}).get('pid')}",
                    {str(r): int(n) for r, n in live.items() if isinstance(n, int)})
        return "db", {r: int(n) for r, n in self.db.execute("SELECT reason, count FROM rejections")}

    def _label(self, dev: int | None) -> tuple[str | None, str | None]:
        if dev is None:
            return None, None
        if dev not in self._labels:
            row = self.db.execute(LABEL_SQL, (dev,)).fetchone()
            self._labels[dev] = (row[0], row[1]) if row else (None, None)
        return self._labels[dev]

    def _item(self, e: dict[str, Any]) -> dict[str, Any]:
        """One /v1/frames entry as a monitor line (same keys as the DB-mode lines)."""
        dev = e.get("device_id")
        label, site = self._label(dev)
        rejected = e.get("verdict") == "rejected"
        item = {"type": "rejected" if rejected else "frame", "at": e.get("at"),
                "seq": e.get("seq"), "path": e.get("path"), "rssi": e.get("rssi"),
                "snr": e.get("snr"), "verdict": e.get("verdict"), "device_id": dev,
                "device": f"0x{dev:08X}" if isinstance(dev, int) else None, "label": label,
                "site": site, "kind": e.get("kind"), "counter": e.get("counter"),
                "attempt": e.get("attempt"), "battery_mv": e.get("battery_mv"),
                "incident_id": e.get("incident_id")}
        if rejected:
            item.update(reason=e.get("reason"), count=1)
        return item

    def _poll_db(self) -> list[dict[str, Any]]:
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
        return out

    def _poll_daemon(self, pid: Any) -> list[dict[str, Any]] | None:
        """New frames from the daemon, or None when its frames API does not answer."""
        fresh = pid != self.daemon_pid  # just started following this daemon
        since = 0 if fresh else self.since
        doc = self._frames(since)
        if doc is None:
            return None
        if not fresh and int(doc["next"]) < since:  # restarted under the same pid (tests)
            fresh, doc = True, self._frames(0)
            if doc is None:
                return None
        self.daemon_pid = pid
        self.since = int(doc["next"])
        items = [self._item(e) for e in doc["frames"]]
        if fresh:  # the DB (or the previous daemon) already showed what came before
            items = [i for i in items if (i["at"] or 0.0) > self.shown_until]
        return items

    def poll(self) -> list[dict[str, Any]]:
        out, self._backlog = self._backlog, []
        source, counts = self._rejection_counts()
        pid = (self.status or {}).get("pid") if source != "db" else None
        got = self._poll_daemon(pid) if pid is not None else None
        if got is None:
            if self.daemon_pid is not None:  # daemon gone: its frames were shown already
                row = self.db.execute("SELECT coalesce(max(id), 0) FROM receptions").fetchone()
                self.last_id = int(row[0])
                self.daemon_pid = None
            got = self._poll_db()
        out += got
        now = time.time()
        per_frame = self.daemon_pid is not None
        for reason, total in sorted(counts.items()):
            if per_frame and (reason in FRAME_REASONS or self.device is not None):
                continue  # shown frame by frame, or not attributable to the device
            delta = total - self.rejections.get(reason, 0)
            if delta > 0 and source == self.source:  # a new source (daemon restart) rebases
                out.append({"type": "rejected", "at": now, "reason": reason, "count": delta,
                            "total": total})
        self.source, self.rejections = source, counts
        for i in out:
            if i["type"] == "frame" or "seq" in i:
                self.shown_until = max(self.shown_until, float(i["at"] or 0.0))
        if not per_frame:
            self.shown_until = max(self.shown_until, now)
        return out


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
        follower = Follower(db, cfg, dev, history)
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
