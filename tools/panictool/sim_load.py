"""`panictool sim`'s load: pressing simulated buttons at a rate, and watching their consoles
for what the firmware recognised and which presses the gateway acknowledged (when, and over
which path). cmd_sim.py registers the buttons, runs them and prints the summary.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from panicbutton import report
from panictool import common

PRESS_RE = re.compile(r"PANIC-BUTTON press: (?:alarm|test) counter=(\d+)", re.I)
ACK_RE = re.compile(r"PANIC-BUTTON ack: (?:alarm|test) counter=(\d+) status=(\d+) via (\w+)",
                    re.I)


@dataclass
class Press:
    """One press sim made: which button, and when its clicks (or hold) began and ended."""

    button: int
    start: float
    end: float = 0.0


# After its last click a button waits the classifier's gap (1 s) before it calls the
# pattern a TEST; clicks that come sooner join the same pattern and nothing is recognised.
# So one button is pressed again only after this much quiet.
QUIET_S = 1.5


def rng_for(seed: int | None) -> random.Random:
    return random.Random(seed)


class Tracker:
    """Timestamps each button's console lines (the simulator keeps them as a list)."""

    def __init__(self, buttons: list[Any]) -> None:
        self.buttons = buttons
        self.seen = [0] * len(buttons)
        self.presses: dict[tuple[int, int], float] = {}
        self.press_times: list[list[float]] = [[] for _ in buttons]
        self.acks: dict[tuple[int, int], tuple[float, str]] = {}
        self.heartbeat_acked: set[int] = set()
        self.boot_reports: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Tracker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            time.sleep(0.02)

    def poll(self) -> None:
        with self._lock:
            now = time.monotonic()
            for i, b in enumerate(self.buttons):
                lines = b.console[self.seen[i]:]
                self.seen[i] += len(lines)
                for ln in lines:
                    m = PRESS_RE.search(ln)
                    if m:
                        self.presses[(i, int(m.group(1)))] = now
                        self.press_times[i].append(now)
                    m = ACK_RE.search(ln)
                    if m:
                        self.acks.setdefault((i, int(m.group(1))), (now, m.group(3)))
                    if "ack: heartbeat" in ln.lower():
                        self.heartbeat_acked.add(i)
                    if ln.startswith("PANIC-BUTTON {"):
                        rep = report.parse(ln)
                        if rep is not None:
                            self.boot_reports[i] = rep

    def settled(self, fired: list[Press]) -> bool:
        """Every fired press was recognised and every recognised press acknowledged."""
        with self._lock:
            recognised = sum(len(t) for t in self.press_times)
            return recognised >= len(fired) and all(k in self.acks for k in self.presses)

    def unrecognised(self, fired: list[Press]) -> list[dict[str, Any]]:
        """Per button, the presses the firmware printed no press line for, and why."""
        out = []
        for i, b in enumerate(self.buttons):
            mine = [p for p in fired if p.button == i]
            missing = len(mine) - len(self.press_times[i])
            if missing <= 0:
                continue
            if getattr(b, "crash", None):
                why = "the firmware crashed: " + b.crash.strip().splitlines()[-1]
            elif not b.running:
                why = "the firmware was not running (stopped or in deep sleep)"
            else:
                last = b.console[-1] if b.console else "nothing"
                why = (f"no `PANIC-BUTTON press` line after the clicks (last console line: "
                       f"{last[:120]})")
            out.append({"button": b.name, "missing": missing, "why": why})
        return out


def press_load(sims: list[Any], rng: random.Random, rate: float, duration: float,
                kind: str, as_json: bool) -> tuple[list[Press], int]:
    """One press per button, or Poisson presses at ``rate`` for ``duration`` seconds, each
    on a button that is free (its last press and the firmware's quiet gap are over);
    (the presses made, how many found no free button). Each press runs in its own thread
    because it blocks for its simulated clicks; nothing is queued past ``duration``."""
    threads: list[threading.Thread] = []
    fired: list[Press] = []
    free_at = [0.0] * len(sims)

    def press(p: Press) -> None:
        if kind == "alarm":
            sims[p.button].alarm()
        else:
            sims[p.button].test()
        p.end = time.monotonic()
        free_at[p.button] = p.end + QUIET_S

    def fire(i: int) -> None:
        p = Press(i, time.monotonic())
        free_at[i] = float("inf")  # busy until its clicks are done
        fired.append(p)
        t = threading.Thread(target=press, args=(p,), daemon=True)
        t.start()
        threads.append(t)

    skipped = 0
    start = time.monotonic()
    with common.count_progress(as_json) as prog:
        if duration <= 0:
            task = prog.add_task("pressing", total=len(sims))
            for i in range(len(sims)):
                fire(i)
                prog.advance(task)
                if i + 1 < len(sims):
                    time.sleep(1.0 / rate)
        else:
            task = prog.add_task(f"pressing for {duration:.0f} s", total=int(duration))
            while True:
                time.sleep(min(rng.expovariate(rate), duration))
                now = time.monotonic()
                prog.update(task, completed=int(min(now - start, duration)))
                if now - start >= duration:
                    break
                free = [i for i in range(len(sims)) if free_at[i] <= now]
                if free:
                    fire(rng.choice(free))
                else:
                    skipped += 1
    for t in threads:
        t.join(30)
    return fired, skipped
