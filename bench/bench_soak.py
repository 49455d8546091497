"""Malformed-traffic soak (issue 11 points 3 and 4): 1,000,000 bad HTTP requests of every kind
in bench/malformed.py (bad request lines and methods, bad headers, oversize lines/headers/
bodies, broken and cut bodies, slowloris connections held open) with a valid signed alarm
every 1,000, against a real `panicgw run`.

Reported, every 100,000 bad requests: the gateway's RSS and the bytes it logged. Results:
- RSS growth from the 100,000 mark to the end (target: flat within 5 MB), baseline the RSS
  at 100,000 (after warm-up) measured in the same run;
- log bytes per 100,000 bad requests, against what one log line per request would cost
  (the average length of the gateway's own lines in this run x 100,000);
- every valid alarm ACKed (checked, the run fails otherwise).

``SOAK_REQUESTS`` in the environment shortens a trial run (default 1,000,000).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from malformed import Flood

from panicgw.registry import DeviceRecord, SiteRecord
from panicgw.store import Store
from panicproto import frames

TOTAL = int(os.environ.get("SOAK_REQUESTS", "1000000"))
STEP = 100_000 if TOTAL >= 200_000 else max(1, TOTAL // 10)
KEY = bytes(range(16))
DEV = 0x50A50001


def emit(metric: str, value: float, unit: str, baseline: str, baseline_value: float,
         target: str, **extra: object) -> None:
    ratio = float(f"{value / baseline_value:.3g}") if baseline_value else None
    print(json.dumps({"bench": "soak", "metric": metric, "value": round(value, 1),
                      "unit": unit, "better": "lower", "baseline": baseline,
                      "baseline_value": round(baseline_value, 1), "ratio": ratio,
                      "target": target, **extra}), flush=True)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _panicgw() -> list[str]:
    exe = Path(sys.executable).parent / "panicgw"
    return [str(exe)] if exe.exists() else [sys.executable, "-c",
                                            "from panicgw.cli import app; app()"]


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data = tmp / "data"
        s = Store(data / "gateway.db")
        site = SiteRecord("Toko Soak", "shop", "Jl. Uji 1, Bandung", -6.9, 107.6, "Bu Uji",
                          "+62 812 0000 0001")
        s.upsert_device(DeviceRecord(DEV, KEY, site, "till", ["wifi"], 3600, "0.1.0"))
        s.close()
        cfg = tmp / "gateway.toml"
        cfg.write_text(f'[gateway]\ndata_dir = "{data}"\n'
                       '[http]\nhost = "127.0.0.1"\nport = 0\nrate_per_s = 100000.0\n'
                       'rate_burst = 100000\nclient_timeout_s = 1.0\n'
                       '[serial]\nenabled = false\n[status]\nport = 0\n')
        log_path = tmp / "gateway.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(_panicgw() + ["run", "--config", str(cfg)],
                                    stdout=subprocess.DEVNULL, stderr=log)
            try:
                port = 0
                end = time.monotonic() + 60
                while not port and time.monotonic() < end:
                    try:
                        info = json.loads((data / "runtime.json").read_text())
                        port = int(info["http_port"]) if info.get("pid") == proc.pid else 0
                    except (OSError, ValueError, KeyError):
                        time.sleep(0.1)
                assert port, "gateway did not start"
                samples: list[tuple[int, float, int]] = []
                t0 = time.monotonic()

                def progress(t) -> None:  # noqa: ANN001 - malformed.Tally
                    rss, logb = _rss_mb(proc.pid), log_path.stat().st_size
                    samples.append((t.bad, rss, logb))
                    print(f"progress: {t.bad:>9,} bad requests: RSS {rss:.1f} MB, log {logb:,} "
                          f"bytes, {t.alarms_acked}/{t.alarms_sent} alarms ACKed, "
                          f"{t.bad / (time.monotonic() - t0):.0f} req/s", flush=True)

                def alarm(n: int) -> bytes:
                    return frames.encode_uplink(KEY, frames.Uplink(
                        frames.ALARM, DEV, frames.make_counter(1, n + 1), wifi=True))

                def acks(up: bytes, body: bytes) -> bool:
                    d = frames.decode_downlink(body, KEY)
                    return d.kind == frames.ACK and d.counter == frames.decode_uplink(up).counter

                flood = Flood(port, concurrency=32, slow=16, alarm_every=1000,
                              make_alarm=alarm, check_ack=acks)
                tally = flood.run(TOTAL, progress, STEP)
                elapsed = time.monotonic() - t0
            finally:
                proc.terminate()
                proc.wait(30)
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln]
    assert tally.alarms_acked == tally.alarms_sent, tally.alarm_failures[:5]
    avg_line = sum(len(ln) + 1 for ln in lines) / max(1, len(lines))
    first = samples[0]
    growth = max(rss for _, rss, _ in samples[1:]) - first[1] if len(samples) > 1 else 0.0
    log_per_step = (samples[-1][2] - first[2]) / max(1, len(samples) - 1)
    print(f"info: soak {tally.bad:,} bad requests in {elapsed:.0f} s "
          f"({tally.bad / elapsed:.0f}/s), kinds {dict(tally.sent)}, answers "
          f"{dict(tally.statuses)}, cut without answer {sum(tally.closed.values()):,}; "
          f"{tally.alarms_acked} valid alarms ACKed; log {len(lines)} lines", flush=True)
    series = [{"bad_requests": n, "rss_mb": round(r, 1), "log_bytes": b} for n, r, b in samples]
    emit(f"gateway RSS growth over {tally.bad:,} malformed HTTP requests after the first "
         f"{first[0]:,} ({tally.alarms_acked} valid alarms among them, all ACKed)", growth, "MB",
         f"RSS at {first[0]:,}", first[1], "flat within 5 MB", series=series)
    emit(f"log bytes per {STEP:,} malformed HTTP requests", log_per_step, "bytes",
         f"one log line per request ({avg_line:.0f} bytes/line, this run) x {STEP:,}",
         avg_line * STEP, "bounded by the rejection log budget, not by the traffic")


if __name__ == "__main__":
    main()
