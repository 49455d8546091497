"""What `panicgw monitor` shows: frames as they are heard and rejections, live, from the
running daemon when it answers and from the DB when it does not.

With the daemon running it follows the daemon's ``GET /v1/frames`` (panicgw.pipeline.recent):
every judged frame with its verdict, including rejected ones attributed to the device they
claim (bad_tag, replay, unknown_device), so ``--device`` finds the button with the wrong
key. Rejections that never became a frame (http_*, link_*) show as counter deltas from
``/v1/status``. With the daemon stopped it follows the DB (read-only, safe beside the
daemon thanks to WAL): every reception row is one heard copy of a stored frame; rejected
frames are never stored, so they show as per-reason counter deltas of the DB's totals.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from panicgw import config as gwconfig
from panicgw.diag.status_api import base_url, get_json, status_endpoint
from panicgw.pipeline.recent import FRAME_REASONS, MAX_LIMIT
from panicgw.store.inspect import Inspector


class Follower:
    """Yields new frames and rejections since the last poll, from the running daemon's
    recent-frames API when it answers, else from the DB (switching as the daemon starts
    and stops, without showing a frame twice)."""

    def __init__(self, db: Inspector, cfg: gwconfig.Config, device: int | None,
                 history: int) -> None:
        self.db = db
        self.cfg = cfg
        self.device = device
        self.status: dict[str, Any] | None = None
        self._labels: dict[int, tuple[str | None, str | None]] = {}
        self.daemon_pid: Any = None  # set while following a daemon's /v1/frames
        self.since = 0
        self.shown_until = time.time()  # newest time shown: watermark when switching source
        self.last_id = max(0, db.last_reception_id() - history)
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
        ep = status_endpoint(self.cfg)
        if ep is None:
            return None
        doc = get_json(base_url(*ep) + path, 1.0, 4_000_000)
        return doc if isinstance(doc, dict) else None

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
        return "db", {r: n for r, n, _ in self.db.rejections()}

    def _label(self, dev: int | None) -> tuple[str | None, str | None]:
        if dev is None:
            return None, None
        if dev not in self._labels:
            self._labels[dev] = self.db.label(dev) or (None, None)
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
        for r in self.db.receptions_after(self.last_id):
            self.last_id = r.id
            if self.device is not None and r.device_id != self.device:
                continue
            out.append({"type": "frame", "at": r.at, "path": r.path, "rssi": r.rssi,
                        "snr": r.snr, "verdict": "duplicate" if r.duplicate else "stored",
                        "device_id": r.device_id, "device": f"0x{r.device_id:08X}",
                        "label": r.label, "site": r.site, "kind": r.kind, "counter": r.counter,
                        "attempt": r.attempt, "battery_mv": r.battery_mv,
                        "incident_id": r.incident_id})
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
                self.last_id = self.db.last_reception_id()
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
