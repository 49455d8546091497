"""Dispatch back -> alarm delivered (issue 11.10): how long an alarm that waited through a
dispatch outage takes to reach dispatch once dispatch answers again, at the default
settings, and what the waiting costs dispatch (probes per minute during the outage).

A real `panicgw run` (default [dispatch] settings) forwards to the recording dispatch
server in this process. Each cycle: dispatch starts failing (alternately HTTP 500 answers
and a closed port: connection refused), one alarm is POSTed to the gateway's Wi-Fi ingest
and ACKed, the outage lasts a random 2-10 s (so the flip falls anywhere in the probe
schedule), then dispatch is healed at T_back; the alarm's accepted request arrives at
T_ok. We report T_ok - T_back (p50, p99) and the failed requests per minute of outage.

Baseline, same run: press-to-delivered of an alarm with dispatch healthy (POST to the
gateway -> accepted at dispatch), what delivery costs when nothing waits.
Target (issue 11.10): p99 <= 5 s, one request per probe.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from panicgw import registry
from panicgw.dispatch_server.server import DispatchServer
from panicgw.forward.payload import make_incident_id
from panicproto import frames

CYCLES = int(sys.argv[1]) if len(sys.argv) > 1 else 30
HEALTHY = 20
KEY = bytes(range(16))
DEV = 0x00BE0C01


def emit(metric: str, value: float, unit: str, better: str, baseline: str,
         baseline_value: float, target: str, **extra: object) -> None:
    ratio = round(value / baseline_value, 3) if baseline_value else None
    print(json.dumps({"bench": "dispatch_recovery", "metric": metric, "value": round(value, 1),
                      "unit": unit, "better": better, "baseline": baseline,
                      "baseline_value": round(baseline_value, 1), "ratio": ratio,
                      "target": target, **extra}), flush=True)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]


class Dispatch:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.srv = DispatchServer()
        self.call(self.srv.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def run(self, fn: Any, *args: Any) -> Any:
        async def wrap() -> Any:
            return fn(*args)
        return self.call(wrap())

    def received(self) -> list[Any]:
        return self.run(lambda: list(self.srv.received))


def wait(pred: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.005)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    rng = random.Random(1110)
    disp = Dispatch()
    tmp = Path(tempfile.mkdtemp(prefix="pb-recovery-"))
    data = tmp / "data"
    http_port = free_port()
    cfg = tmp / "gateway.toml"
    cfg.write_text(f'[gateway]\nid = "gw-bench"\ndata_dir = "{data}"\nlog_level = "error"\n'
                   f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n'
                   '[serial]\nenabled = false\n[status]\nport = 0\n'
                   f'[dispatch]\nurl = "{disp.srv.url}"\nallow_insecure_http = true\n')
    panicgw = str(Path(sys.executable).parent / "panicgw")
    proc = subprocess.Popen([panicgw, "run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: (data / "runtime.json").exists(), 30, "panicgw run")
        export = tmp / "export.json"
        # one button per press: repeat presses of one button join one incident
        registry.write_export(export, [registry.DeviceRecord(
            DEV + i, KEY, registry.SiteRecord(f"Toko {i}", "shop", f"Jl. Bench {i}", -6.9,
                                              107.6), paths=["wifi"])
            for i in range(HEALTHY + CYCLES)])
        subprocess.run([panicgw, "devices", "import", str(export), "--config", str(cfg)],
                       check=True, capture_output=True, timeout=60)
        presses = [0]

        def press() -> str:
            dev = DEV + presses[0]
            presses[0] += 1
            body = frames.encode_uplink(KEY, frames.Uplink(frames.ALARM, dev, 0x00010001,
                                                           wifi=True))
            for _ in range(300):  # the daemon reloads its registry within 2 s
                c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
                c.request("POST", "/v1/frames", body=body,
                          headers={"Content-Type": "application/octet-stream"})
                status = c.getresponse().status
                c.close()
                if status == 200:
                    return make_incident_id(dev, 0x00010001, "panic")
                time.sleep(0.02)
            raise SystemExit(f"gateway answered {status}")

        def accepted_at(incident: str) -> float | None:
            for r in disp.received():
                if (r.status == 200 and isinstance(r.body, dict)
                        and r.body.get("incident_id") == incident):
                    return float(r.at)
            return None

        healthy = []
        for _ in range(HEALTHY):
            t0 = time.time()
            inc = press()
            healthy.append(wait(lambda inc=inc: accepted_at(inc), 30, "healthy delivery") - t0)
            time.sleep(0.05)

        back, rates = [], []
        for n in range(CYCLES):
            refused = n % 2 == 1
            if refused:
                disp.call(disp.srv.stop())
            else:
                disp.run(disp.srv.fail, 500)
            n_before = len(disp.received())
            t_fail = time.time()
            inc = press()
            time.sleep(rng.uniform(2.0, 10.0))
            if refused:
                disp.call(disp.srv.start())
            t_back = time.time()
            if not refused:
                disp.run(disp.srv.heal)
            t_ok = wait(lambda inc=inc: accepted_at(inc), 60, "the alarm after the outage")
            back.append(t_ok - t_back)
            if not refused:
                failed = [r for r in disp.received()[n_before:] if r.status == 500]
                rates.append(len(failed) / (t_back - t_fail) * 60)
            wait(lambda: status(data).get("outbox", {}).get("pending") == 0, 60, "drained")
            probes = status(data).get("dispatch", {}).get("probes")
            print(f"cycle {n + 1}/{CYCLES} ({'refused' if refused else 'HTTP 500'}): "
                  f"back -> delivered {1000 * back[-1]:.0f} ms (probes so far {probes})",
                  flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)

    base = statistics.median(healthy) * 1000
    target = "p99 <= 5000 ms (issue 11.10)"
    emit("dispatch back -> alarm delivered, p50", pct(back, 50) * 1000, "ms", "lower",
         "press -> delivered, dispatch healthy (p50)", base, target, samples=len(back))
    emit("dispatch back -> alarm delivered, p99", pct(back, 99) * 1000, "ms", "lower",
         "press -> delivered, dispatch healthy (p50)", base, target, samples=len(back),
         max_ms=round(max(back) * 1000, 1))
    emit("probes per minute while an alarm waits (dispatch answering 500)",
         statistics.mean(rates), "requests/min", "lower",
         "nominal probe rate, 60 s / alarm_probe_s (2.5 s)", 24.0,
         "one request per probe (cheap for dispatch)")


def status(data: Path) -> dict[str, Any]:
    import urllib.request

    try:
        port = json.loads((data / "runtime.json").read_text())["status_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError, KeyError):
        return {}


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the gateway binds it right after)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    main()
