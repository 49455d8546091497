"""Alarm press-to-receiver-ACK over SIA DC-09, beside the JSON route, in one run.

`panicgw run` with 10,000 registered devices, a `[dispatch]` URL (the recording dispatch
server) and one `[[sia]]` receiver (pysiaalarm's TCP receiver, plain, the receiver Home
Assistant's SIA integration runs), while bench/heartbeat_load.py sends 1,000 heartbeats/s.
Alarms are POSTed one at a time (Wi-Fi path); each reaches both routes. Measured per alarm,
from the POST to the moment the gateway recorded the route's answer (its ``delivered_at``:
the ACK read on DC-09, the 2xx on the JSON route), so both figures mean the same thing:
"the centre has it, and the gateway knows". The DC-09 figure is the metric, the JSON
route's p99 from the same alarms its baseline; target p99 <= 50 ms like the JSON route's.
Also printed: when pysiaalarm's handler saw each alarm (before its ACK went out).

Run with `python bench/run.py sia`.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests" / "sia"), str(ROOT / "tests" / "gateway")]

from bench_gateway import LOAD, N_DEVICES, _key, _panicgw, _populate, _wait_port  # noqa: E402
from gwharness import DispatchThread  # noqa: E402
from siakit import PySiaReceiver  # noqa: E402

from panicgw.forward.payload import make_incident_id  # noqa: E402
from panicproto import frames  # noqa: E402

ROUTE = "sia:centre"


def emit(metric: str, value: float, unit: str, better: str, baseline: str,
         baseline_value: float, target: str, **extra: object) -> None:
    ratio = round(value / baseline_value, 3) if baseline_value else None
    print(json.dumps({"bench": "sia", "metric": metric, "value": round(value, 1),
                      "unit": unit, "better": better, "baseline": baseline,
                      "baseline_value": round(baseline_value, 1), "ratio": ratio,
                      "target": target, **extra}), flush=True)


class _Receiver(PySiaReceiver):
    """pysiaalarm's receiver that also notes when each alarm (HA) reached its handler."""

    def __init__(self) -> None:
        super().__init__("tcp")
        self.arrived: list[float] = []
        self.cond = threading.Condition()

    async def _on_event(self, event) -> None:  # noqa: ANN001 - pysiaalarm's SIAEvent
        if event.code == "HA":
            with self.cond:
                self.arrived.append(time.time())
                self.cond.notify_all()
        await super()._on_event(event)


class Centre:
    """The receiver on its own loop thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.rx = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.arrived, self.cond = self.rx.arrived, self.rx.cond

    async def _start(self) -> _Receiver:
        return await _Receiver().__aenter__()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.rx.__aexit__(None, None, None),
                                         self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def _delivered(db: Path) -> dict[str, tuple[float | None, float | None]]:
    """incident -> (JSON route delivered_at, DC-09 route delivered_at)."""
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {inc: (d, s) for inc, d, s in c.execute(
            "SELECT o.incident_id, o.delivered_at, r.delivered_at FROM outbox o "
            "LEFT JOIN outbox_routes r ON r.outbox_id = o.id AND r.route = ? "
            "WHERE json_extract(o.payload, '$.event') = 'panic'", (ROUTE,))}
    finally:
        c.close()


def sia_latency(tmp: Path, alarms: int = 400, hb_rate: float = 1000.0) -> None:
    disp = DispatchThread()
    centre = Centre()
    got: set[str] = set()
    cond = threading.Condition()

    def on_request(rec) -> None:  # noqa: ANN001 - the receiver's record type
        with cond:
            got.add((rec.body or {}).get("incident_id", ""))
            cond.notify_all()

    disp.srv.on_request = on_request
    data_dir = tmp / "sia"
    _populate(data_dir / "gateway.db", N_DEVICES)
    cfg = tmp / "sia.toml"
    cfg.write_text(f'[gateway]\ndata_dir = "{data_dir}"\nlog_level = "warning"\n'
                   '[http]\nhost = "127.0.0.1"\nport = 0\n'
                   'rate_per_s = 100000.0\nrate_burst = 100000\n'
                   '[serial]\nenabled = false\n[status]\nport = 0\n'
                   f'[dispatch]\nurl = "{disp.srv.url}"\nallow_insecure_http = true\n'
                   '[pipeline]\nincident_window_s = 0\n'
                   f'[[sia]]\nname = "centre"\nhost = "127.0.0.1"\nport = {centre.rx.port}\n'
                   'account = "1234"\nreceiver = 1\nline = 1\nlink_test_s = 0\n')
    proc = subprocess.Popen(_panicgw() + ["run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load = None
    sent: dict[str, float] = {}
    try:
        port = _wait_port(data_dir, proc)
        gap = 0.03
        secs = alarms * (gap + 0.03) + 4
        load = subprocess.Popen([sys.executable, str(LOAD), str(port), str(hb_rate),
                                 str(secs), str(N_DEVICES)], stdout=subprocess.PIPE, text=True)
        assert load.stdout is not None and "ready" in load.stdout.readline()
        time.sleep(1.0)  # let the load reach its rate
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for n in range(alarms):
            if load.poll() is not None:
                break  # the load ended early: what follows would not be under load
            i = (n * 37) % N_DEVICES
            ctr = frames.make_counter(4, n + 1)
            up = frames.encode_uplink(_key(i), frames.Uplink(
                frames.ALARM, 0x10000000 + i, ctr, battery_mv=3700))
            incident = make_incident_id(0x10000000 + i, ctr, "panic")
            t0 = time.time()
            c.request("POST", "/v1/frames", body=up,
                      headers={"Content-Type": "application/octet-stream"})
            assert c.getresponse().read()
            sent[incident] = t0
            with cond:  # block, no polling: it would steal a core from the gateway
                cond.wait_for(lambda inc=incident: inc in got, timeout=10)
            with centre.cond:
                centre.cond.wait_for(lambda k=n: len(centre.arrived) > k, timeout=10)
            time.sleep(gap)
        time.sleep(0.5)  # the last ACK's commit
        hb = json.loads(load.communicate(timeout=120)[0].strip().splitlines()[-1])
        done = _delivered(data_dir / "gateway.db")
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        proc.terminate()
        proc.wait(20)
        disp.close()
        centre.close()
    json_ms = [(done[i][0] - t) * 1000 for i, t in sent.items() if done.get(i, (None,))[0]]
    sia_ms = [(done[i][1] - t) * 1000 for i, t in sent.items()
              if i in done and done[i][1] is not None]
    at_rx = [(a - t) * 1000 for a, t in zip(centre.arrived, sent.values(), strict=False)]
    assert len(sia_ms) >= alarms * 0.9 and len(json_ms) >= alarms * 0.9, \
        (len(sia_ms), len(json_ms), "alarms not delivered on both routes")
    q = statistics.quantiles
    print(f"info: heartbeat load {hb['rate']:.0f}/s, {hb['errors']} errors, heartbeat ACK "
          f"p99 {hb['ack_p99_ms']:.1f} ms; {len(sia_ms)} alarms; DC-09 p50 "
          f"{statistics.median(sia_ms):.2f} ms, JSON p50 {statistics.median(json_ms):.2f} ms; "
          f"pysiaalarm's handler saw them (before its ACK) p50 "
          f"{statistics.median(at_rx):.2f} ms p99 {q(at_rx, n=100)[98]:.2f} ms", flush=True)
    emit(f"alarm press-to-receiver-ACK p99, SIA DC-09 over TCP to pysiaalarm (heartbeats at "
         f"{hb['rate']:.0f}/s, 10k devices, loopback)", q(sia_ms, n=100)[98], "ms", "lower",
         "the JSON route's press-to-2xx p99 for the same alarms, same run",
         q(json_ms, n=100)[98], "p99 <= 50 ms",
         p50_ms=round(statistics.median(sia_ms), 2),
         json_p50_ms=round(statistics.median(json_ms), 2),
         heartbeats_per_s=round(hb["rate"]))


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        sia_latency(Path(d))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
