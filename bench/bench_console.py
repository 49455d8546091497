"""Dispatch console: what an operator waits for, and what the console can take.

A real `panicconsole serve` (one process, SQLite WAL + synchronous=FULL) with 10,000 sites
registered (from a registry export, as an administrator would) and 20 operator sessions
open: 19 signed-in live streams (aiohttp SSE clients) and one headless Chromium showing the
console. Each metric is printed as one JSON object per line with a baseline measured in the
same run (bench/run.py collects them):

- gateway POST -> alarm line visible in the browser's DOM (a MutationObserver stamps the
  moment the line appears; same machine, same clock), p99 over 200 alarms, each taken and
  closed by an operator afterwards as in a working shift; vs. a bare aiohttp POST round trip
  to a handler that answers at once (what HTTP alone costs on this machine).
- page load: navigation start -> queue rendered and live (the page's own mark), median of
  10 loads with 30 open alarms; vs. a bare aiohttp server sending a page of the same size.
- events accepted durably per second: 32 concurrent "gateways" posting signed documents
  with distinct Idempotency-Keys; vs. the same client against the bare aiohttp handler.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from panicgw.forward.contract import SIGNATURE_HEADER, sign
from panicgw.forward.payload import build_payload, make_incident_id

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKEN, SECRET = "bench-token-0123456789abcdef", "bench-secret-0123456789abcdefghijkl"
PASSWORD = "bench password 1"
N_SITES = 10_000
N_SESSIONS = 20
N_ALARMS = 200
N_LOADS = 10
N_EVENTS = 3000
CONCURRENCY = 32


def emit(metric: str, value: float, unit: str, better: str, baseline: str,
         baseline_value: float, target: str) -> None:
    ratio = round(value / baseline_value, 3) if baseline_value else None
    print(json.dumps({"bench": "console", "metric": metric, "value": round(value, 1),
                      "unit": unit, "better": better, "baseline": baseline,
                      "baseline_value": round(baseline_value, 2), "ratio": ratio,
                      "target": target}), flush=True)


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def site(i: int) -> dict[str, Any]:
    return {"name": f"Toko Bench {i:05d}", "kind": "shop" if i % 5 else "home",
            "address": f"Jl. Bench {i % 97} No. {i}, Yogyakarta",
            "lat": -7.70 - (i % 100) / 500, "lon": 110.30 + (i // 100) / 500,
            "contact": f"Pemilik {i}", "phone": f"+62 811 {i:07d}"}


def doc(i: int, event: str = "panic") -> dict[str, Any]:
    dev = 0x10000000 + i % N_SITES
    now = time.time()
    return build_payload(
        incident_id=make_incident_id(dev, i + 1, event), event=event, gateway_id="gw-bench",
        first_heard=now, site=site(i % N_SITES),
        device={"id": dev, "label": "kasir", "battery_mv": 3600, "low_battery": False,
                "firmware": "0.3.0"},
        paths=[{"path": "lora", "rssi": -101.0, "snr": 4.5, "at": now}], counter=i + 1,
        last_heard=now, forwarded=now)


def signed(d: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(d, separators=(",", ":")).encode()
    return raw, {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}",
                 "Idempotency-Key": d["idempotency_key"], "X-Panic-Gateway": "gw-bench",
                 SIGNATURE_HEADER: sign(SECRET.encode(), int(time.time()), raw)}


def cli(*args: str, cfg: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(BIN / "panicconsole"), *args, "--config", str(cfg)], check=True,
                   capture_output=True, env={**os.environ, **(env or {})}, timeout=300)


class Bare:
    """A bare aiohttp server in a thread: POST answers 200 at once; GET / sends a page."""

    def __init__(self, page: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.page = page
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> int:
        async def post(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"status": "accepted"})

        async def page(request: web.Request) -> web.Response:
            return web.Response(text=self.page, content_type="text/html")
        app = web.Application()
        app.router.add_post("/v1/events", post)
        app.router.add_get("/", page)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        s = web.TCPSite(self.runner, "127.0.0.1", 0)
        await s.start()
        return int(s._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


async def login(http: aiohttp.ClientSession, base: str, user: str) -> str:
    async with http.get(base + "/login") as r:
        page = await r.text()
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    async with http.post(base + "/login", data={"csrf": token, "username": user,
                                                "password": PASSWORD},
                         allow_redirects=False) as r:
        assert r.status == 303, r.status
    async with http.get(base + "/api/me") as r:
        return str((await r.json())["csrf"])


async def stream(base: str, user: str, stop: asyncio.Event, ready: asyncio.Event,
                 counts: list[int]) -> None:
    """One operator's open screen: a signed-in live stream, read to the end."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await login(http, base, user)
        async with http.get(base + "/api/stream?since=0", timeout=aiohttp.ClientTimeout(
                total=None, sock_read=None)) as r:
            ready.set()
            while not stop.is_set():
                line = await r.content.readline()
                if not line:
                    break
                if line.startswith(b"event: alarm"):
                    counts[0] += 1


async def post_latencies(url: str, docs: list[dict[str, Any]]) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as http:
        for d in docs:
            raw, h = signed(d)
            t = time.perf_counter()
            async with http.post(url, data=raw, headers=h) as r:
                await r.read()
                assert r.status == 200, r.status
            out.append(time.perf_counter() - t)
    return out


async def throughput(url: str, docs: list[dict[str, Any]]) -> float:
    bodies = [signed(d) for d in docs]
    q: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for b in bodies:
        q.put_nowait(b)
    conn = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=conn) as http:
        async def worker() -> None:
            while not q.empty():
                raw, h = q.get_nowait()
                async with http.post(url, data=raw, headers=h) as r:
                    await r.read()
                    assert r.status == 200, r.status
        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return len(docs) / (time.perf_counter() - t)


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="pc-bench-")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--no-first-run", f"--user-data-dir={profile}", "--window-size=1500,950"):
        o.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d._profile = profile  # type: ignore[attr-defined]
    return d


WATCH = """
window.seen = {};
new MutationObserver(() => {
  for (const e of document.querySelectorAll('#queue .line')) {
    const k = e.dataset.incident;
    if (!(k in window.seen)) window.seen[k] = performance.timeOrigin + performance.now();
  }
}).observe(document.getElementById('queue'), {childList: true, subtree: true});
"""
WAIT_SEEN = """
const [k, done] = arguments;
const end = Date.now() + 10000;
(function poll() {
  if (k in window.seen) done(window.seen[k]);
  else if (Date.now() > end) done(null);
  else setTimeout(poll, 2);
})();
"""


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    port = 0
    proc = None
    d = None
    bare = None
    try:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = work / "console.toml"
        cfg.write_text(f'[console]\ndata_dir = "{work / "data"}"\nlog_format = "text"\n'
                       f'log_level = "warning"\nlanguage = "en"\n'
                       f'[server]\nport = {port}\n[dispatch]\ntoken = "{TOKEN}"\n'
                       f'secret = "{SECRET}"\n[escalation]\ntake_within_s = 86400\n')
        export = work / "registry.json"
        export.write_text(json.dumps({"format": "panic-button-registry/1", "devices": [
            {"device_id": 0x10000000 + i, "key": os.urandom(16).hex(), "label": "kasir",
             "paths": ["lora"], "supervision_s": 3600, "firmware": "0.3.0", "site": site(i)}
            for i in range(N_SITES)]}))
        cli("sites", "import", str(export), cfg=cfg)
        for i in range(N_SESSIONS + 1):
            cli("user", "add", f"op{i:02d}", "--role", "operator", cfg=cfg,
                env={"PANICCONSOLE_PASSWORD": PASSWORD})
        with (work / "console.log").open("wb") as log:
            proc = subprocess.Popen([str(BIN / "panicconsole"), "serve", "--config", str(cfg)],
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        url = base + "/v1/events"
        import urllib.request
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        app_html = (ROOT / "console" / "panicconsole" / "static" / "app.html").read_text()
        bare = Bare(app_html)
        bare_url = f"http://127.0.0.1:{bare.port}/v1/events"

        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()

        def run(coro: Any, timeout: float = 600) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

        stop = asyncio.Event()
        counts = [0]
        readies = []

        tasks = []

        async def open_streams() -> None:
            for i in range(1, N_SESSIONS):
                ev = asyncio.Event()
                readies.append(ev)
                tasks.append(asyncio.ensure_future(stream(base, f"op{i:02d}", stop, ev,
                                                          counts)))
            for ev, t in zip(readies, tasks, strict=True):
                done, _ = await asyncio.wait([asyncio.ensure_future(ev.wait()), t],
                                             return_when=asyncio.FIRST_COMPLETED)
                if t in done:
                    t.result()  # a stream that failed to open: raise its error
        run(open_streams(), 120)

        d = browser()
        d.get(base + "/login")
        d.find_element("id", "username").send_keys("op00")
        d.find_element("id", "password").send_keys(PASSWORD)
        d.find_element("id", "login-submit").click()
        end = time.monotonic() + 20
        while not d.execute_script("return document.body.dataset.ready === '1'"):
            assert time.monotonic() < end, "console page did not load"
            time.sleep(0.05)
        d.execute_script(WATCH)

        async def operator() -> tuple[aiohttp.ClientSession, str]:
            http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            return http, await login(http, base, f"op{N_SESSIONS:02d}")
        op_http, op_csrf = run(operator())

        async def work_off(incident: str) -> None:
            async with op_http.get(base + "/api/state") as r:
                state = await r.json()
            aid = next(a["id"] for a in state["alarms"] if a["incident_id"] == incident)
            h = {"X-CSRF-Token": op_csrf}
            async with op_http.post(f"{base}/api/alarms/{aid}/take", json={}, headers=h) as r:
                assert r.status == 200
            async with op_http.post(f"{base}/api/alarms/{aid}/close", headers=h,
                                    json={"disposition": "test", "note": "bench"}) as r:
                assert r.status == 200

        # 1. POST -> visible in the browser
        lat = []
        for i in range(N_ALARMS):
            dd = doc(i)
            raw, h = signed(dd)
            t0 = time.time()
            r = urllib.request.urlopen(urllib.request.Request(url, data=raw, headers=h))
            r.read()
            seen = d.execute_async_script(WAIT_SEEN, dd["incident_id"])
            assert seen is not None, f"alarm {i} never appeared"
            lat.append(seen / 1000.0 - t0)
            run(work_off(dd["incident_id"]))
        base_lat = run(post_latencies(bare_url, [doc(100_000 + i) for i in range(N_ALARMS)]))
        emit(f"console: gateway POST to alarm visible in a browser, p99 ({N_SESSIONS} operator "
             f"sessions open, {N_SITES:,} sites registered, loopback)", p99(lat) * 1000, "ms",
             "lower", "bare aiohttp POST round trip, p99", p99(base_lat) * 1000, "<= 1000 ms")
        streamed = counts[0]

        # 2. page load with 30 open alarms
        for i in range(30):
            raw, h = signed(doc(50_000 + i))
            urllib.request.urlopen(urllib.request.Request(url, data=raw, headers=h)).read()
        loads = []
        for _ in range(N_LOADS):
            d.get(base + "/")
            end = time.monotonic() + 20
            while not d.execute_script("return document.body.dataset.ready === '1'"):
                assert time.monotonic() < end
                time.sleep(0.01)
            assert len(d.execute_script("return App.alarms.size ? [...App.alarms.keys()] : []"))\
                == 30
            loads.append(d.execute_script("return window.pcReadyMs"))
        bare_loads = []
        for _ in range(N_LOADS):
            d.get(f"http://127.0.0.1:{bare.port}/")
            bare_loads.append(d.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "return n.domContentLoadedEventEnd"))
        emit(f"console page load to a live queue (30 open alarms, {N_SITES:,} sites), median",
             statistics.median(loads), "ms", "lower",
             "bare aiohttp page of the same HTML, DOMContentLoaded, median",
             statistics.median(bare_loads), "<= 1000 ms")

        # 3. durable events per second
        eps = run(throughput(url, [doc(200_000 + i, "tamper" if i % 4 else "panic")
                                   for i in range(N_EVENTS)]))
        base_eps = run(throughput(bare_url, [doc(300_000 + i) for i in range(N_EVENTS)]))
        emit(f"console events accepted durably (WAL, synchronous=FULL), {CONCURRENCY} "
             "gateways posting at once", eps, "events/s", "higher",
             "bare aiohttp POST handler (answers without storing), same client", base_eps,
             ">= 200 events/s")
        print(f"   (the 19 other sessions' streams carried {streamed} alarm changes)")
        stop.set()
        run(op_http.close())
        return 0
    finally:
        if d is not None:
            profile = d._profile  # type: ignore[attr-defined]
            d.quit()
            shutil.rmtree(profile, ignore_errors=True)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        if bare is not None:
            bare.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
