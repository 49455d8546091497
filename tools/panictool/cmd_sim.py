"""`panictool sim`: simulated buttons running the real firmware against a running gateway.

Each button is a ``panicsim.SimButton`` (the real firmware/button/code.py on a simulated
board). Over Wi-Fi they POST to the gateway's HTTP ingest with real sockets; over LoRa
they transmit on a simulated air to a virtual bridge (the real bridge firmware) whose USB
port is a pseudo-terminal the gateway opens as its serial bridge. The buttons are
registered with fresh ids and keys first, so the gateway accepts them. With many buttons
and a rate it is a load generator: the summary counts acknowledged presses and latency.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import typer

from panicbutton import report
from panicgw import registry
from panicgw.store import Store, StoreError
from panictool import common, identity

EPILOG = """\
Examples:

  panictool sim --gateway-url http://127.0.0.1:8080 --gateway-db panicgw-data/gateway.db
  panictool sim --bridge --gateway-db gw.db            # prints the pty: set \\[serial] port
  panictool sim --gateway-url http://127.0.0.1:8080 --gateway-db gw.db \\
      --buttons 50 --rate 5 --duration 60 --json       # load: 5 TEST presses/s for 60 s

A gateway limits HTTP frames per client address (\\[http] rate_per_s, rate_burst); all
simulated buttons share 127.0.0.1, so raise those for load runs.

Exit codes: 0 every press acknowledged; 1 some presses were not acknowledged; 2 bad
options; 6 cannot register the simulated buttons.
"""

PRESS_RE = re.compile(r"PANIC-BUTTON press: (?:alarm|test) counter=(\d+)", re.I)
ACK_RE = re.compile(r"PANIC-BUTTON ack: (?:alarm|test) counter=(\d+) status=(\d+) via (\w+)",
                    re.I)
SIM_SITE = registry.SiteRecord("Simulated shop", "shop", "panictool sim", -6.9147, 107.6098,
                               "installer", "")


class Tracker:
    """Timestamps each button's console lines (the simulator keeps them as a list)."""

    def __init__(self, buttons: list[Any]) -> None:
        self.buttons = buttons
        self.seen = [0] * len(buttons)
        self.presses: dict[tuple[int, int], float] = {}
        self.acks: dict[tuple[int, int], tuple[float, str]] = {}
        self.heartbeat_acked: set[int] = set()
        self.boot_reports: dict[int, dict[str, Any]] = {}
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
        now = time.monotonic()
        for i, b in enumerate(self.buttons):
            lines = b.console[self.seen[i]:]
            self.seen[i] += len(lines)
            for ln in lines:
                m = PRESS_RE.search(ln)
                if m:
                    self.presses[(i, int(m.group(1)))] = now
                m = ACK_RE.search(ln)
                if m:
                    self.acks.setdefault((i, int(m.group(1))), (now, m.group(3)))
                if "ack: heartbeat" in ln.lower():
                    self.heartbeat_acked.add(i)
                if ln.startswith("PANIC-BUTTON {"):
                    rep = report.parse(ln)
                    if rep is not None:
                        self.boot_reports[i] = rep


def register_all(recs: list[registry.DeviceRecord], gateway_db: Path | None,
                 export: Path | None) -> None:
    if gateway_db is not None:
        s = Store(gateway_db)
        try:
            s.upsert_devices(recs)
        finally:
            s.close()
    if export is not None:
        registry.write_export(export, recs)


def sim(
    gateway_url: str = typer.Option("", "--gateway-url", help="Wi-Fi buttons POST here, e.g. "
                                     "http://127.0.0.1:8080."),
    bridge: bool = typer.Option(False, "--bridge", help="LoRa buttons and a virtual bridge on "
                                "a pseudo-terminal (its path is printed)."),
    bridge_link: Path | None = typer.Option(None, "--bridge-link", help="Make the bridge's "
                                            "port appear at this path (a symlink while sim "
                                            "runs), so the gateway can be set up first."),
    gateway_db: Path | None = typer.Option(None, "--gateway-db", help="Register the simulated "
                                           "buttons in this gateway DB."),
    export: Path | None = typer.Option(None, "--export", help="Or write them to this export "
                                       "file (import it on the gateway while sim waits)."),
    buttons: int = typer.Option(1, "--buttons", min=1, max=500, help="How many buttons."),
    rate: float = typer.Option(0.2, "--rate", min=0.001, help="Presses per second, all "
                               "buttons together."),
    duration: float = typer.Option(0.0, "--duration", min=0.0, help="Seconds of pressing "
                                   "(0: one press per button)."),
    kind: str = typer.Option("test", "--kind", help="test (never dispatched) or alarm "
                             "(reaches dispatch!)."),
    sf: int = typer.Option(9, "--sf", help="LoRa spreading factor (the gateway's bridge must "
                           "match)."),
    frequency: str = typer.Option("921.4", "--frequency", help="LoRa MHz."),
    ready_timeout: float = typer.Option(30.0, "--ready-timeout", help="Seconds to wait for "
                                        "every button's first heartbeat to be acknowledged."),
    ack_timeout: float = typer.Option(30.0, "--ack-timeout", help="Seconds to wait for the "
                                      "last acknowledgements."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed for press timing."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run simulated buttons (real firmware) against a running gateway; press and measure."""
    from panicsim import Air, SimButton, SimClock, start_virtual_bridge

    if bool(gateway_url) == bridge:
        common.fail(common.USAGE, "choose one path: --gateway-url URL (Wi-Fi) or --bridge "
                    "(LoRa)", as_json=as_json)
    if gateway_db is None and export is None:
        common.fail(common.USAGE, "the gateway must know the simulated buttons",
                    "pass --gateway-db PATH or --export FILE", as_json)
    if kind not in ("test", "alarm"):
        common.fail(common.USAGE, "--kind must be test or alarm", as_json=as_json)
    if gateway_url and not gateway_url.startswith(("http://", "https://")):
        common.fail(common.USAGE, "--gateway-url must start with http:// or https://",
                    as_json=as_json)
    link = _check_link(bridge_link, bridge, as_json) if bridge_link is not None else None
    rng = random.Random(seed)
    recs = []
    taken: set[int] = set()
    for n in range(buttons):
        device_id, key = identity.new_identity(taken)
        taken.add(device_id)
        recs.append(registry.DeviceRecord(device_id, key, SIM_SITE, f"sim {n + 1}",
                                          ["wifi"] if gateway_url else ["lora"], 3600,
                                          None))
    try:
        register_all(recs, gateway_db, export)
    except (registry.RegistryError, StoreError, OSError) as e:
        common.fail(common.REGISTRY, f"cannot register the simulated buttons: {e}",
                    as_json=as_json)

    clock = SimClock(speed=1.0)
    air = Air(clock, seed=seed)
    vbridge = None
    if bridge:
        # The pty's own link lives in a private temp dir: a shared name next to the user's
        # link would be clobbered by a second sim and deleted when the first one stops.
        vbridge = start_virtual_bridge(air, settings={"PB_FREQUENCY_MHZ": frequency,
                                                      "PB_SF": sf})
        shown = vbridge.port_path
        if link is not None:
            try:
                _point_link(link, vbridge.port_path)
            except OSError as e:
                vbridge.stop()
                common.fail(common.FILES, f"cannot create the --bridge-link {link}: {e}",
                            "choose a path in a directory you can write to", as_json)
            shown = f"{link} (-> {vbridge.port_path})"
        # markup=False: rich would eat "[serial]" as a style tag; soft_wrap: a long path
        # folded at the terminal width cannot be copied into the gateway's config.
        common.err_console.print(f"virtual bridge on {shown}: set the gateway's [serial] port "
                                 f"to it (SF{sf}, {frequency} MHz)", markup=False,
                                 soft_wrap=True)
    settings: dict[str, Any] = {"PB_REGION": "AS923-2", "PB_SF": sf,
                                "PB_FREQUENCY_MHZ": frequency}
    if gateway_url:
        settings.update({"PB_WIFI_SSID": "sim", "PB_WIFI_PASSWORD": "simulated",
                         "PB_GATEWAY_URL": gateway_url, "PB_LORA": 0})
    board = "feather_esp32s3" if gateway_url else "feather_rp2040_rfm95"
    sims = [SimButton(r.device_id, r.key, air=air, board=board, settings=settings,
                      wifi_networks={"sim": "simulated"}, name=r.label) for r in recs]
    tracker = Tracker(sims).start()
    summary: dict[str, Any] = {}
    try:
        for b in sims:
            b.start()
        end = time.monotonic() + ready_timeout
        while len(tracker.heartbeat_acked) < len(sims) and time.monotonic() < end:
            time.sleep(0.1)
        summary["ready"] = len(tracker.heartbeat_acked)
        summary["boot_errors"] = [r["error"]["message"] for r in tracker.boot_reports.values()
                                  if "error" in r]
        if not tracker.heartbeat_acked:
            summary["presses"] = 0
        else:
            fired = _press_load(sims, tracker, rng, rate, duration, kind, as_json)
            summary["fired"] = fired
            end = time.monotonic() + ack_timeout
            while time.monotonic() < end and (
                    len(tracker.presses) < fired
                    or any(k not in tracker.acks for k in tracker.presses)):
                time.sleep(0.1)
        tracker.poll()
    finally:
        tracker.stop()
        for b in sims:
            b.stop()
        if vbridge is not None:
            vbridge.stop()
            if link is not None:
                _remove_link(link, vbridge.port_path)
    _summarise(summary, tracker, recs, kind)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _print_summary(summary)
    if summary["presses"] == 0 or summary["unacknowledged"] \
            or summary["presses"] < summary.get("fired", 0):
        raise typer.Exit(common.CHECK_FAILED)


def _check_link(bridge_link: Path, bridge: bool, as_json: bool) -> Path:
    """The absolute --bridge-link path, refused before anything is registered when it
    cannot work or would replace a file that is not a symlink (e.g. a typo'd config)."""
    if not bridge:
        common.fail(common.USAGE, "--bridge-link goes with --bridge (the LoRa path)",
                    as_json=as_json)
    link = bridge_link.expanduser().absolute()
    if not link.parent.is_dir():
        common.fail(common.USAGE, f"--bridge-link: directory {link.parent} does not exist",
                    "create it first or choose another path", as_json)
    if link.exists() and not link.is_symlink():
        common.fail(common.USAGE, f"--bridge-link: {link} exists and is not a symlink; "
                    "refusing to replace it", "choose a free path (an old link is replaced)",
                    as_json)
    return link


def _point_link(link: Path, target: str) -> None:
    """Make ``link`` a symlink to ``target`` atomically, so a gateway polling the path never
    sees it missing or half-made."""
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _remove_link(link: Path, target: str) -> None:
    """Remove our link once the port is gone (as a by-id link goes with its device), unless
    something else replaced it meanwhile."""
    try:
        if link.is_symlink() and os.readlink(link) == target:
            link.unlink()
    except OSError:
        pass


def _press_load(sims: list[Any], tracker: Tracker, rng: random.Random, rate: float,
                duration: float, kind: str, as_json: bool) -> int:
    """One press per button, or Poisson presses at ``rate`` for ``duration`` seconds; each
    press runs in its own thread because a press blocks for its simulated hold time."""
    threads: list[threading.Thread] = []
    busy = [threading.Lock() for _ in sims]

    def press(i: int) -> None:
        with busy[i]:  # one finger per button
            if kind == "alarm":
                sims[i].alarm()
            else:
                sims[i].test()

    def fire(i: int) -> None:
        t = threading.Thread(target=press, args=(i,), daemon=True)
        t.start()
        threads.append(t)

    with common.count_progress(as_json) as prog:
        if duration <= 0:
            task = prog.add_task("pressing", total=len(sims))
            for i in range(len(sims)):
                fire(i)
                prog.advance(task)
                time.sleep(1.0 / rate if len(sims) > 1 else 0)
        else:
            task = prog.add_task("pressing", total=int(duration))
            start = time.monotonic()
            while time.monotonic() - start < duration:
                time.sleep(min(rng.expovariate(rate), duration))
                if time.monotonic() - start >= duration:
                    break
                fire(rng.randrange(len(sims)))
                prog.update(task, completed=int(time.monotonic() - start))
    for t in threads:
        t.join(30)
    return len(threads)


def _summarise(s: dict[str, Any], tracker: Tracker, recs: list[Any], kind: str) -> None:
    lat = []
    paths: dict[str, int] = {}
    for key, t0 in tracker.presses.items():
        if key in tracker.acks:
            t1, path = tracker.acks[key]
            lat.append(max(0.0, t1 - t0))
            paths[path] = paths.get(path, 0) + 1
    lat.sort()
    s.update({
        "buttons": len(recs), "kind": kind, "presses": len(tracker.presses),
        "acknowledged": len(lat), "unacknowledged": len(tracker.presses) - len(lat),
        "ack_paths": paths,
        "latency_s": {"p50": round(statistics.median(lat), 3),
                      "p95": round(lat[min(len(lat) - 1, int(len(lat) * 0.95))], 3),
                      "max": round(lat[-1], 3)} if lat else None,
        "device_ids": [f"{r.device_id:08X}" for r in recs][:20],
    })


def _print_summary(s: dict[str, Any]) -> None:
    typer.echo(f"{s['buttons']} simulated buttons, {s['ready']} ready "
               f"(first heartbeat acknowledged)")
    for e in s["boot_errors"]:
        typer.echo(f"  boot error: {e}")
    if s["presses"] < s.get("fired", 0):
        typer.echo(f"{s['fired'] - s['presses']} presses were not recognised by the firmware")
    typer.echo(f"{s['presses']} {s['kind'].upper()} presses, {s['acknowledged']} "
               f"acknowledged, {s['unacknowledged']} not")
    if s["latency_s"]:
        latency = s["latency_s"]
        typer.echo(f"press-to-ACK latency: p50 {latency['p50']} s, p95 {latency['p95']} s, "
                   f"max {latency['max']} s; via {s['ack_paths']}")
    if s["ready"] == 0:
        typer.echo("what to do: is the gateway running, does it know the buttons (registry "
                   "reload takes ~2 s), and for --bridge is its [serial] port the printed pty?")


SIM = common.command_help(sim, EPILOG)
