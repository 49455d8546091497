"""Runs one demo: start the world, play the scenario, settle, summarise, tear down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from panicdemo import summary as summary_mod
from panicdemo.scenario import Scenario
from panicdemo.world import World

SETTLE_S = 20.0  # after --duration, how long we wait for the last deliveries at most


def waiting_for(world: World, sc: Scenario, status: dict[str, Any] | None) -> str | None:
    """What is still in flight (None when settled): a recognised press not yet at dispatch,
    the gateway's outbox not empty, or the silent button's supervision loss (a timer)."""
    if status is None:
        return "gateway status"
    if sc.pressing():
        return "a press in progress"
    pending = (status.get("outbox") or {}).get("pending", 1)
    if pending or status.get("ingest_queue", 1):
        return f"gateway outbox ({pending} pending)"
    delivered = {str((r.body or {}).get("incident_id", "")).rsplit("-", 1)[0]
                 for r in (world.dispatch.received() if world.dispatch else [])
                 if r.verdict == "accepted" and isinstance(r.body, dict)}
    for b in world.buttons:
        for _, kind, counter in b.presses():
            if kind in ("alarm", "test") and f"{b.device_id:08X}-{counter:08X}" not in delivered:
                return f"{b.name}'s {kind} at dispatch"
    a = world.by_id[sc.roles.ack_lost]
    if a.presses() and not a.acks("alarm"):
        return f"{a.name}'s retry after its lost ACK"
    lost = [r for r in world.dispatch.received() if isinstance(r.body, dict)
            and r.body.get("event") == "supervision_lost"] if world.dispatch else []
    return None if lost else "supervision loss of the silent button"


def run(*, lora: int, wifi: int, duration_s: float, seed: int | None, keep: bool,
        log: Callable[[str, str], None],
        tick: Callable[[dict[str, Any] | None, list[Any]], None] | None = None,
        ) -> tuple[dict[str, Any], World]:
    """Play the demo; returns (summary, world). Raises world.SetupError if a part fails."""
    world = World(n_lora=lora, n_wifi=wifi, seed=seed, keep=keep, on_log=log)
    t_start = time.monotonic()
    try:
        world.start()
        sc = Scenario(world, duration_s=duration_s, log=log)
        worker = threading.Thread(target=sc.run, name="scenario", daemon=True)
        worker.start()
        end = time.monotonic() + sc.duration_s
        hard_end = end + SETTLE_S
        status = None
        waiting: str | None = "start"
        while True:
            status = world.status() or status
            if tick is not None:
                tick(status, world.dispatch.received() if world.dispatch else [])
            now = time.monotonic()
            if now >= hard_end:
                log(f"stopping: settle time over, still waiting for {waiting}", "yellow")
                break
            if not worker.is_alive() and now >= end - 5:
                waiting = waiting_for(world, sc, status)
                if waiting is None:
                    break
            time.sleep(0.5)
        sc.stop.set()
        worker.join(5)
        sc.join(3)
        status = world.status() or status
        result = summary_mod.build(world, sc, status, time.monotonic() - t_start)
        result["settled"] = waiting is None
        if world.dispatch is not None:
            result["console_url"] = world.dispatch.url
        if waiting is not None:
            result["still_waiting_for"] = waiting
        if keep:
            result["workdir"] = str(world.workdir)
        return result, world
    finally:
        world.stop()
