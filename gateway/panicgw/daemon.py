"""The gateway daemon: asyncio wiring of ingest, pipeline, store, forwarders and status.

Threads: the event loop (HTTP, serial, status API, timers) and the store service's
(panicgw.store.service): one writer thread, where the pipeline's batches commit (group
commits with fsync never stall the loop) and every other write is queued behind them, and
read lanes for the status API, the forwarder and supervision; WAL lets them read while the
writer writes.

systemd: ``READY=1`` once every listener is up, ``WATCHDOG=1`` only while the writer
thread answers (a wedged store gets the service restarted), ``STOPPING=1`` on SIGTERM, after
which new frames get 503 / no ACK, in-flight frames are committed and acknowledged, and the
forwarder gets a moment to finish what it is sending.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from typing import Any

from aiohttp import web

from panicgw import __version__
from panicgw import pipeline as pl
from panicgw.config import Config
from panicgw.pipeline.recent import MAX_LIMIT, RecentFrames
from panicgw.store import Store
from panicgw.store.service import FORWARDER, STATUS, SUPERVISION, StoreService
from panicgw.systemd import sd_notify, watchdog_interval

log = logging.getLogger("panicgw.daemon")


# -- memory: glibc heap under connection churn ------------------------------------------------

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD = 128 * 1024


def _libc() -> Any:
    """glibc via ctypes, or None elsewhere (musl, macOS): then nothing is tuned."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def tune_malloc() -> bool:
    """Keep RSS flat under malformed-request floods (issue 11 point 4).

    What grew: glibc's main heap, not live objects (tracemalloc stays flat). asyncio reads
    every socket with ``recv(256 KiB)`` and shrinks the result; glibc's *dynamic* mmap
    threshold rises above 256 KiB after the first such block is freed, so from then on each
    new connection's read buffer is carved from the heap and shrunk in place, and the heap
    fragments and grows (about 1 MB per 60,000 short-lived connections, no plateau). A fixed
    threshold keeps those buffers in their own mappings, returned on free."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def malloc_trim() -> None:
    """Give free heap pages back to the OS (the backstop for fragmentation that remains)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


# -- the gateway -------------------------------------------------------------------------------


class Gateway:
    """Everything ``panicgw run`` runs. ``start()``, then ``serve_forever()`` or ``stop()``."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.gateway_id: str = cfg.gateway["id"]
        self.started_at = time.time()
        cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.rejections = pl.Rejections(cfg.pipeline["reject_log_per_min"])
        # One writer, whose thread runs the pipeline's batches; read lanes; the checkpointer.
        self.store = StoreService(cfg.db_path)
        # Every new outbox item gets a delivery row per [[sia]] receiver, in its transaction.
        from panicgw.forward.sia.route import route_name

        self.store.writer.store.routes = tuple(route_name(r) for r in cfg.sia)
        self.pipeline = pl.Pipeline(
            self.store.writer.store, self.gateway_id,
            replay_size=cfg.pipeline["replay_window"],
            incident_window_s=cfg.pipeline["incident_window_s"],
            rejections=self.rejections,
        )
        self.recent = RecentFrames()  # last judged frames with verdicts: GET /v1/frames
        self.processor = pl.Processor(self.pipeline, cfg.pipeline["batch_max"],
                                      on_commit=self._on_commit, on_judged=self.recent.record,
                                      linger_s=cfg.pipeline["linger_ms"] / 1000,
                                      executor=self.store.writer.executor)
        self.store.reader(STATUS)  # opened now: an unreadable DB fails the start
        self.http: Any = None
        self.serial: Any = None
        self.forwarder: Any = None
        self.mqtt: Any = None
        self.sia_routes: list[Any] = []  # forward.sia.route.SiaRoute, one per [[sia]]
        self.commit_listeners: list[Any] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._status_runner: web.AppRunner | None = None
        self.status_port: int | None = None
        self._stopping = asyncio.Event()

    # -- hooks ---------------------------------------------------------------------------------

    def _on_commit(self, outs: list[pl.Outcome]) -> None:
        if self.sia_routes and any(o.outbox is not None for o in outs):
            self._wake_routes()
        if self.forwarder is not None:
            # Stored events, and trouble raised by a refused frame (device_trouble).
            fresh = [o.outbox for o in outs if o.outbox is not None]
            if fresh:
                self.forwarder.offer(fresh)  # alarms go out now, not after an outbox read
        stored = [o for o in outs if o.status == pl.STORED]
        if not stored:
            return
        for listener in self.commit_listeners:
            listener(stored)

    def _wake_routes(self) -> None:
        for route in self.sia_routes:
            route.wake()

    # -- status --------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        db = await self.store.read(STATUS, _db_status)
        return {
            "gateway_id": self.gateway_id,
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 1),
            "devices": len(self.pipeline.devices),
            "ingest_queue": self.processor.depth,
            "outbox": db["outbox"],
            "frames": dict(self.pipeline.stats),
            "batches": self.processor.batches,
            "largest_batch": self.processor.largest_batch,
            "rejections": dict(sorted(self.rejections.snapshot().items())),
            "rejections_total": db["rejections_total"],
            "bridge": self.serial.status() if self.serial is not None else {"state": "disabled"},
            "http": ({"port": self.http.port, "connections": self.http.connections,
                      "requests": self.http.requests} if self.http is not None
                     else {"state": "disabled"}),
            "broker": (self.mqtt.stats() if self.mqtt is not None else {"state": "disabled"}),
            "dispatch": (self.forwarder.stats() if self.forwarder is not None
                         else {"state": "disabled"}),
            "sia": [{**r.stats(), "outbox": db["routes"].get(r.route, _NO_ROUTE_ROWS)}
                    for r in self.sia_routes],
            "dead_letters": db["dead_letters"],
        }

    async def _status_handler(self, request: web.Request) -> web.Response:
        return web.json_response(await self.status())

    async def _frames_handler(self, request: web.Request) -> web.Response:
        """``GET /v1/frames?since=SEQ&device=HEX8&limit=N`` (docs/gateway.md, status API)."""
        q = request.query
        try:
            since = int(q.get("since", "0"))
            limit = int(q.get("limit", "500"))
            if since < 0 or not 0 <= limit <= MAX_LIMIT:
                raise ValueError
        except ValueError:
            return web.json_response(
                {"error": f"since must be an integer >= 0, limit 0..{MAX_LIMIT}"}, status=400)
        device: int | None = None
        if q.get("device"):
            raw = q["device"].strip().lower().removeprefix("0x")
            if not 1 <= len(raw) <= 8 or raw.strip("0123456789abcdef"):
                return web.json_response(
                    {"error": "device must be 8 hex digits, e.g. 00C0FFEE"}, status=400)
            device = int(raw, 16)
        return web.json_response(self.recent.query(since, device, limit))

    async def _wake_handler(self, request: web.Request) -> web.Response:
        """``POST /v1/outbox/wake``: `panicgw outbox requeue` changed the outbox from another
        process; look at it now instead of at the next poll. Harmless when repeated."""
        self._wake_routes()
        if self.forwarder is None:
            return web.json_response({"woken": bool(self.sia_routes),
                                      "reason": "no dispatch url"})
        self.forwarder.wake()
        return web.json_response({"woken": True})

    async def _start_status(self) -> None:
        s = self.cfg.status
        if not s["enabled"]:
            return
        app = web.Application()
        app.router.add_get("/v1/status", self._status_handler)
        app.router.add_get("/v1/frames", self._frames_handler)
        app.router.add_post("/v1/outbox/wake", self._wake_handler)
        self._status_runner = web.AppRunner(app, access_log=None)
        await self._status_runner.setup()
        site = web.TCPSite(self._status_runner, s["host"], s["port"])
        await site.start()
        self.status_port = self._status_runner.addresses[0][1]
        self._write_runtime()

    def _write_runtime(self) -> None:
        """Ports actually bound (port 0 = any free one), for the CLI and tests."""
        info = {"pid": os.getpid(), "status_port": self.status_port,
                "http_port": self.http.port if self.http is not None else None}
        path = self.cfg.data_dir / "runtime.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, path)

    # -- periodic work ---------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Registry reloads (CLI changes) every 2 s; free heap pages back to the OS every
        minute (off the loop); heartbeat pruning hourly."""
        last_prune = 0.0
        last_trim = time.monotonic()
        keep_s = self.cfg.pipeline["heartbeat_retention_days"] * 86400
        while True:
            await asyncio.sleep(2.0)
            try:
                if time.monotonic() - last_trim >= 60.0:
                    last_trim = time.monotonic()
                    await asyncio.to_thread(malloc_trim)
                if await self.store.writer.run(self.pipeline.maybe_reload):
                    log.info("registry reloaded",
                             extra={"fields": {"devices": len(self.pipeline.devices)}})
                if time.time() - last_prune > 3600:
                    last_prune = time.time()
                    n = await self.store.write(Store.prune_heartbeats, time.time() - keep_s)
                    if n:
                        log.info("pruned heartbeat history", extra={"fields": {"rows": n}})
            except Exception:
                log.exception("housekeeping failed")

    async def _watchdog(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:  # the writer thread (the pipeline's) must answer, or systemd restarts us
                await asyncio.wait_for(self.store.writer.run(lambda: None), interval)
                sd_notify("WATCHDOG=1")
            except TimeoutError:
                log.error("store writer (pipeline) thread not answering; withholding watchdog"
                          " ping")

    # -- dispatch, MQTT, supervision (panicgw.forwarder / mqtt / supervision) --------------------

    def _start_forwarder(self) -> None:
        d = self.cfg.dispatch
        if not d["url"]:
            log.warning("no [dispatch] url configured: alarms are stored but not forwarded")
            return

        from panicgw.forward.forwarder import Forwarder

        # Its outbox reads (due) on a read lane of their own; its delivery records through
        # the writer, behind the pipeline's batches (panicgw.store.service.OutboxPort).
        outbox = self.store.outbox(FORWARDER)
        self.forwarder = Forwarder(
            outbox, d["url"], gateway_id=self.gateway_id, token=d["token"],
            secret=d["secret"], ca_file=d["ca_file"] or None,
            client_cert=d["client_cert"] or None, client_key=d["client_key"] or None,
            timeout_s=d["timeout_s"], alarm_probe_s=d["alarm_probe_s"], call_store=outbox.call,
        )
        self._tasks.append(asyncio.create_task(self.forwarder.run(), name="forwarder"))

    def _start_sia(self) -> None:
        """One DC-09 route per [[sia]] receiver, each with its own outbox state, read lane,
        pacing and link tests (forward.sia.route)."""
        from panicgw.forward.sia.route import SiaRoute, route_name

        for settings in self.cfg.sia:
            route = SiaRoute(settings, self.store.route(route_name(settings)),
                             alarm_probe_s=self.cfg.dispatch["alarm_probe_s"])
            self.sia_routes.append(route)
            self._tasks.append(asyncio.create_task(route.run(), name=route.route))
            log.info("SIA DC-09 route started", extra={"fields": {
                "route": route.route, "primary": str(settings.primary),
                "backup": str(settings.backup) if settings.backup else None,
                "encrypted": settings.encrypted, "format": settings.format}})

    def _start_mqtt(self) -> None:
        m = self.cfg.mqtt
        if not m["enabled"]:
            return
        from panicgw.forward.mqtt import MqttPublisher

        self.mqtt = MqttPublisher(m["host"], m["port"], self.gateway_id,
                                  username=m["username"], password=m["password"], tls=m["tls"])
        self.mqtt.start()
        self.commit_listeners.append(self._publish_events)
        self._tasks.append(asyncio.create_task(self._publish_status(), name="mqtt-status"))

    def _publish_events(self, stored: list[pl.Outcome]) -> None:
        for o in stored:
            if o.event is None:
                continue
            self.mqtt.event(o.event)
            self.mqtt.device_state(o.device_id or 0, {
                "last_heard": o.event["at"], "path": o.event["path"], "rssi": o.event["rssi"],
                "snr": o.event["snr"], "battery_mv": o.event["battery_mv"]})

    async def _publish_status(self) -> None:
        while True:
            try:
                st = await self.status()
                st.pop("dead_letters", None)
                self.mqtt.gateway_status(st)
            except Exception:
                log.exception("status publish failed")
            await asyncio.sleep(10.0)

    supervise_every_s = 5.0  # how often supervision is evaluated

    def make_supervisor(self, **state: Any) -> Any:
        """The supervision policy; a subclass (the demo's) may compress its time limits."""
        from panicgw.supervise.rule import Supervisor

        return Supervisor(
            started_at=self.started_at,
            checkin_interval_s=self.cfg.dispatch["checkin_interval_s"],
            bridge_missing_s=self.cfg.serial["missing_trouble_s"],
            **state,
        )

    async def _supervise(self) -> None:
        """Evaluate supervision on its own read lane (candidates only), then store what it
        raised through the writer. See panicgw.supervise.runner."""

        from panicgw.supervise import runner as sr

        last = await self.store.read(STATUS, Store.get_meta, "last_checkin")
        sup = self.make_supervisor(
            last_checkin=float(last) if last else None,
            bridge_trouble=await self.store.read(STATUS, Store.get_meta,
                                                 "bridge_trouble") == "1",
        )
        while True:
            try:
                serial = self.serial
                last_seen = (serial.last_pong or serial.last_rx) if serial else None
                undo = sr.undo_point(sup)
                events = await self.store.read(
                    SUPERVISION, sr.evaluate, sup, time.time(), bridge_last_seen=last_seen,
                    bridge_enabled=serial is not None,
                    checkins=self.forwarder is not None or bool(self.sia_routes))
                try:
                    stored = await self.store.write(sr.store_events, self.gateway_id,
                                                    events) if events else []
                except Exception:
                    undo()  # not stored: the next tick raises them again
                    raise
                if len(stored) < len(events):
                    log.info("supervision: %d event(s) dropped, their device was heard"
                             " while they were decided", len(events) - len(stored))
                if stored:
                    for ev in stored:
                        log.info("supervision event %s", ev.event, extra={"fields": {
                            "device_id": ev.device_id, "detail": ev.detail}})
                    if self.forwarder is not None:
                        self.forwarder.wake()
                    self._wake_routes()
            except Exception:
                log.exception("supervision tick failed")
            await asyncio.sleep(self.supervise_every_s)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        from panicgw.ingest.http import HttpIngest
        from panicgw.tls import server_context

        self._tasks.append(asyncio.create_task(self.processor.run(), name="pipeline"))
        h = self.cfg.http
        if h["enabled"]:
            ctx = server_context(h["tls_cert"], h["tls_key"]) if h["tls_cert"] else None
            self.http = HttpIngest(
                self.processor.submit, self.rejections, host=h["host"], port=h["port"],
                max_body=h["max_body"], rate_per_s=h["rate_per_s"], rate_burst=h["rate_burst"],
                client_timeout_s=h["client_timeout_s"], max_clients=h["max_clients"],
                ssl_context=ctx, gateway_id=self.gateway_id,
            )
            await self.http.start()
        if self.cfg.serial["enabled"]:
            from panicgw.ingest.serial import SerialIngest

            self.serial = SerialIngest(self.processor, self.rejections, self.cfg.serial)
            self.serial.start()
        self._start_forwarder()
        self._start_sia()
        self._start_mqtt()
        await self._start_status()
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        self._tasks.append(asyncio.create_task(self.store.checkpoint_forever(),
                                               name="checkpointer"))
        self._tasks.append(asyncio.create_task(self._supervise(), name="supervision"))
        wd = watchdog_interval()
        if wd:
            self._tasks.append(asyncio.create_task(self._watchdog(wd), name="watchdog"))
        self._write_runtime()
        sd_notify(f"READY=1\nSTATUS=gateway {self.gateway_id} running\nMAINPID={os.getpid()}")
        log.info("gateway started", extra={"fields": {
            "gateway_id": self.gateway_id, "version": __version__,
            "devices": len(self.pipeline.devices), "db": str(self.cfg.db_path),
            "http_port": self.http.port if self.http else None,
            "status_port": self.status_port}})

    def request_stop(self) -> None:
        self._stopping.set()

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self._stopping.wait()
        await self.stop()

    async def stop(self, drain_s: float = 10.0) -> None:
        """Graceful stop: refuse new frames, commit and ACK what is in flight, then close."""
        sd_notify("STOPPING=1")
        log.info("stopping: draining in-flight frames",
                 extra={"fields": {"queued": self.processor.depth}})
        if self.http is not None:
            self.http.accepting = False
        if self.serial is not None:
            self.serial.pause_reading()
        drained = await self.processor.drain(drain_s)
        if self.serial is not None:
            await self.serial.flush_downlinks(2.0)
            await self.serial.stop()
        if self.http is not None:
            await self.http.stop()
        if self.forwarder is not None:
            await self.forwarder.stop(timeout=3.0)
        await asyncio.gather(*(r.stop(timeout=3.0) for r in self.sia_routes))
        if self.mqtt is not None:
            self.mqtt.stop()
        if self._status_runner is not None:
            await self._status_runner.cleanup()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.processor.close()
        self.store.close()
        (self.cfg.data_dir / "runtime.json").unlink(missing_ok=True)
        log.info("stopped", extra={"fields": {"drained": drained}})


async def run(cfg: Config) -> int:
    tune_malloc()
    gw = Gateway(cfg)
    await gw.start()
    await gw.serve_forever()
    return 0


def _db_status(st: Store) -> dict[str, Any]:
    """The status parts that come from SQLite (on the status lane)."""
    return {"outbox": st.outbox_counts(), "rejections_total": st.rejections(),
            "dead_letters": st.dead_letters(20), "routes": st.route_counts()}


_NO_ROUTE_ROWS = {"pending": 0, "delivered": 0, "dead": 0, "pending_alarms": 0}
