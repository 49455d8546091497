"""`panicgw events --follow` as a technician runs it: a real process beside a DB that is
being written, printing new matching events until Ctrl-C."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from diagkit import DEV, Gateway

PANICGW = str(Path(sys.executable).parent / "panicgw")


def _store(gw: Gateway, counter: int, kind: str) -> None:
    with gw.store.transaction():
        inc = f"pb-{DEV:08x}-{counter:08x}" if kind != "heartbeat" else None
        eid = gw.store.insert_event(DEV, counter, kind, inc, time.time(), 0, 0, 3700,
                                    b"\x00" * 19)
        gw.store.add_reception(eid, "lora", -101.0, 5.5, time.time(), False)


def _lines(proc: subprocess.Popen) -> queue.Queue:
    q: queue.Queue = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return q


def _next(q: queue.Queue) -> str:
    return q.get(timeout=15)


def test_follow_prints_new_matching_events_until_ctrl_c(gw: Gateway) -> None:
    gw.write_config()
    _store(gw, 1, "heartbeat")
    _store(gw, 2, "alarm")
    proc = subprocess.Popen([PANICGW, "events", "-c", str(gw.config), "--follow", "--json",
                             "--kind", "alarm", "--interval", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        q = _lines(proc)
        first = json.loads(_next(q))  # the existing match first
        assert (first["counter"], first["kind"]) == (2, "alarm")
        _store(gw, 3, "heartbeat")  # filtered out
        _store(gw, 4, "alarm")
        _store(gw, 5, "alarm")
        got = [json.loads(_next(q)), json.loads(_next(q))]
        assert [(e["counter"], e["kind"]) for e in got] == [(4, "alarm"), (5, "alarm")]
        assert got[0]["receptions"][0]["rssi"] == -101.0
        assert q.empty()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert q.empty()  # nothing else: the heartbeat never matched
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_follow_text_lines_and_sigterm(gw: Gateway) -> None:
    gw.write_config()
    proc = subprocess.Popen([PANICGW, "events", "-c", str(gw.config), "-f", "--interval", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        q = _lines(proc)
        assert "following new events" in _next(q)  # empty DB: only the banner
        _store(gw, 7, "test")
        line = _next(q)
        assert "test" in line and f"0x{DEV:08X}" in line and "lora -101dBm/5.5dB" in line
        proc.terminate()
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
