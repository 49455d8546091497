"""`panictool sim`: simulated buttons running the real firmware against a running gateway.

Each button is a ``panicsim.SimButton`` (the real firmware/button/code.py on a simulated
board). Over Wi-Fi they POST to the gateway's HTTP ingest with real sockets; over LoRa
they transmit on a simulated air to a virtual bridge (the real bridge firmware) whose USB
port is a pseudo-terminal the gateway opens as its serial bridge. The buttons are
registered with fresh ids and keys first, so the gateway accepts them, and removed again
on every way out (done, failed, Ctrl-C, SIGTERM): left registered they would go silent and
raise "supervision lost" to police. With many buttons and a rate it is a load generator:
the summary counts acknowledged presses and latency (the pressing and the watching of the
buttons' consoles are sim_load.py's).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from panicgw import access
from panictool import common, identity
from panictool.sim_load import Press, Tracker, press_load, rng_for

EPILOG = """\
Examples:

  panictool sim --gateway-url http://127.0.0.1:8080 --config /etc/panicgw/gateway.toml
  panictool sim --bridge --gateway-db panicgw-data/gateway.db
                                        # prints the pty: set the gateway's \\[serial] port
  panictool sim --gateway-url http://127.0.0.1:8080 --gateway-db gw.db \\
      --buttons 50 --rate 5 --duration 60 --json       # load: 5 TEST presses/s for 60 s

The simulated buttons are registered in the gateway's DB (--config, default
/etc/panicgw/gateway.toml, or --gateway-db; it must exist: the daemon creates it) and
removed again when sim ends, however it ends (a SIGKILL excepted). With --export they go
to a file you import on the gateway; sim cannot remove them there, so it prints the
`panicgw devices remove` commands to run afterwards.

TEST presses reach dispatch like an installer's test: Contact ID 601, marked "test": true.
--kind alarm sends real ALARMs (Contact ID 122, silent panic, not marked as a test): use it
only with a gateway whose dispatch is a test system.

A gateway limits HTTP frames per client address (\\[http] rate_per_s, rate_burst); all
simulated buttons share 127.0.0.1, so raise those for load runs. One button presses at
most once every few seconds (5 clicks and the firmware's quiet gap); a higher --rate needs
more --buttons, and presses no button was free for are counted as skipped.

Exit codes: 0 every press acknowledged; 1 some presses were not acknowledged or not
recognised; 2 bad options; 6 the gateway DB or export file is unusable; 130/143 stopped by
Ctrl-C/SIGTERM (the buttons are removed all the same).
"""

SIM_SITE = access.SiteRecord("Simulated shop", "shop", "panictool sim", -6.9147, 107.6098,
                             "installer", "")


@contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end sim like Ctrl-C does: through the ``finally`` that removes
    the simulated buttons from the gateway (SIGKILL cannot be caught)."""
    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def open_registry(gateway_db: Path | None, config: Path | None, export: Path | None,
                  as_json: bool) -> access.Store | None:
    """The gateway's DB (never created here), unless the buttons go to an export file."""
    if export is not None and gateway_db is None and config is None:
        return None
    if gateway_db is None and config is None and not access.default_config().is_file():
        common.fail(common.USAGE, "the gateway must know the simulated buttons",
                    "pass the gateway's --config (or --gateway-db <data_dir>/gateway.db), "
                    "or --export FILE to import on the gateway", as_json)
    try:
        return access.open_db(access.locate_db(gateway_db, config))
    except (access.AccessError, OSError) as e:
        common.fail(common.REGISTRY, str(e), as_json=as_json)


def remove_all(store: access.Store, recs: list[access.DeviceRecord]) -> int:
    """Unregister the simulated buttons (their events stay in the history)."""
    return sum(1 for r in recs if store.remove_device(r.device_id))


def _cleanup(store: access.Store | None, recs: list[access.DeviceRecord]) -> str:
    """However sim ends, no simulated button stays registered; '' when done, else why not
    (then the summary lists the commands that remove them)."""
    if store is None:
        return "they were written to an export file"
    try:
        remove_all(store, recs)
    except (access.StoreError, sqlite3.Error, OSError) as e:
        common.err_console.print(f"could not remove the simulated buttons from {store.path}: "
                                 f"{e}", markup=False)
        return str(e)
    return ""


def sim(
    gateway_url: str = typer.Option("", "--gateway-url", help="Wi-Fi buttons POST here, e.g. "
                                     "http://127.0.0.1:8080."),
    bridge: bool = typer.Option(False, "--bridge", help="LoRa buttons and a virtual bridge on "
                                "a pseudo-terminal (its path is printed)."),
    bridge_link: Path | None = typer.Option(None, "--bridge-link", help="Make the bridge's "
                                            "port appear at this path (a symlink while sim "
                                            "runs), so the gateway can be set up first."),
    config: Path | None = typer.Option(None, "--config", help="The gateway's config (default "
                                       "/etc/panicgw/gateway.toml): the buttons are "
                                       "registered in its DB while sim runs."),
    gateway_db: Path | None = typer.Option(None, "--gateway-db", help="The gateway's DB "
                                           "(<data_dir>/gateway.db) instead of --config."),
    export: Path | None = typer.Option(None, "--export", help="Or write them to this export "
                                       "file (import it on the gateway while sim waits)."),
    buttons: int = typer.Option(1, "--buttons", min=1, max=500, help="How many buttons."),
    rate: float = typer.Option(0.2, "--rate", min=0.001, help="Presses per second, all "
                               "buttons together."),
    duration: float = typer.Option(0.0, "--duration", min=0.0, help="Seconds of pressing "
                                   "(0: one press per button); then at most --ack-timeout "
                                   "for the last acknowledgements."),
    kind: str = typer.Option("test", "--kind", help="test: reaches dispatch as Contact ID "
                             "601 marked \"test\": true; alarm: a real ALARM (Contact ID "
                             "122), only with a test dispatch."),
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

    if bool(gateway_url) == bridge:
        common.fail(common.USAGE, "choose one path: --gateway-url URL (Wi-Fi) or --bridge "
                    "(LoRa)", as_json=as_json)
    if kind not in ("test", "alarm"):
        common.fail(common.USAGE, "--kind must be test or alarm", as_json=as_json)
    if gateway_url and not gateway_url.startswith(("http://", "https://")):
        common.fail(common.USAGE, "--gateway-url must start with http:// or https://",
                    as_json=as_json)
    link = _check_link(bridge_link, bridge, as_json) if bridge_link is not None else None
    store = open_registry(gateway_db, config, export, as_json)
    try:
        taken: set[int] = {d.device_id for d in store.list_devices()} if store else set()
        recs = []
        for n in range(buttons):
            device_id, key = identity.new_identity(taken)
            taken.add(device_id)
            recs.append(access.DeviceRecord(device_id, key, SIM_SITE, f"sim {n + 1}",
                                            ["wifi"] if gateway_url else ["lora"], 3600,
                                            None))
        with _stop_signals():
            summary = _run(store, recs, export, gateway_url, bridge, link, rate, duration,
                           kind, sf, frequency, ready_timeout, ack_timeout, seed, as_json)
    finally:
        if store is not None:
            store.close()
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _print_summary(summary)
    if summary["presses"] == 0 or summary["unacknowledged"] or summary["unrecognised"]:
        raise typer.Exit(common.CHECK_FAILED)


def _run(store: access.Store | None, recs: list[access.DeviceRecord], export: Path | None,
         gateway_url: str, bridge: bool, link: Path | None, rate: float, duration: float,
         kind: str, sf: int, frequency: str, ready_timeout: float, ack_timeout: float,
         seed: int | None, as_json: bool) -> dict[str, Any]:
    """Register, run, press, and always unregister: the summary, with what was cleaned."""
    from panicsim import Air, SimButton, SimClock, start_virtual_bridge

    summary: dict[str, Any] = {}
    try:
        if store is not None:
            store.upsert_devices(recs)
        if export is not None:
            access.write_export(export, recs)
    except (access.RegistryError, access.StoreError, OSError) as e:
        if store is not None:
            remove_all(store, recs)
        common.fail(common.REGISTRY, f"cannot register the simulated buttons: {e}",
                    as_json=as_json)
    started = time.monotonic()
    clock = SimClock(speed=1.0)
    air = Air(clock, seed=seed)
    vbridge = None
    sims: list[Any] = []
    tracker = None
    try:
        if bridge:
            # The pty's own link lives in a private temp dir: a shared name next to the
            # user's link would be clobbered by a second sim and deleted when one stops.
            vbridge = start_virtual_bridge(air, settings={"PB_FREQUENCY_MHZ": frequency,
                                                          "PB_SF": sf})
            shown = vbridge.port_path
            if link is not None:
                try:
                    _point_link(link, vbridge.port_path)
                except OSError as e:
                    common.fail(common.FILES, f"cannot create the --bridge-link {link}: {e}",
                                "choose a path in a directory you can write to", as_json)
                shown = f"{link} (-> {vbridge.port_path})"
            # markup=False: rich would eat "[serial]" as a style tag; soft_wrap: a long
            # path folded at the terminal width cannot be copied into the gateway's config.
            common.err_console.print(f"virtual bridge on {shown}: set the gateway's [serial] "
                                     f"port to it (SF{sf}, {frequency} MHz)", markup=False,
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
        for b in sims:
            b.start()
        with common.waiting(f"waiting for {len(sims)} buttons' first heartbeat to be "
                            "acknowledged", ready_timeout, as_json) as tick:
            end = time.monotonic() + ready_timeout
            while len(tracker.heartbeat_acked) < len(sims) and time.monotonic() < end:
                time.sleep(0.1)
                tick(None)
        summary["ready"] = len(tracker.heartbeat_acked)
        summary["boot_errors"] = [r["error"]["message"] for r in
                                  tracker.boot_reports.values() if "error" in r]
        fired: list[Press] = []
        skipped = 0
        if tracker.heartbeat_acked:
            t0 = time.monotonic()
            fired, skipped = press_load(sims, rng_for(seed), rate, duration, kind, as_json)
            summary["pressing_s"] = round(time.monotonic() - t0, 1)
            with common.waiting("waiting for the last acknowledgements", ack_timeout,
                                as_json) as tick:
                end = time.monotonic() + ack_timeout
                while time.monotonic() < end and not tracker.settled(fired):
                    time.sleep(0.1)
                    tick(None)
        tracker.poll()
        summary["fired"] = len(fired)
        summary["skipped_busy"] = skipped
        summary["not_recognised"] = tracker.unrecognised(fired)
    finally:
        if tracker is not None:
            tracker.stop()
        for b in sims:
            b.stop()
        if vbridge is not None:
            vbridge.stop()
            if link is not None:
                _remove_link(link, vbridge.port_path)
        cleanup_error = _cleanup(store, recs)
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    summary["cleanup"] = ({"removed_from": str(store.path), "devices": len(recs)}
                          if store is not None and not cleanup_error else
                          {"remove_with": [f"panicgw devices remove {r.device_id:08X} --yes"
                                           for r in recs], "error": cleanup_error})
    _summarise(summary, tracker, recs, kind)
    return summary


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


def _summarise(s: dict[str, Any], tracker: Tracker | None, recs: list[Any],
               kind: str) -> None:
    lat = []
    paths: dict[str, int] = {}
    presses = tracker.presses if tracker is not None else {}
    for key, t0 in presses.items():
        if tracker is not None and key in tracker.acks:
            t1, path = tracker.acks[key]
            lat.append(max(0.0, t1 - t0))
            paths[path] = paths.get(path, 0) + 1
    lat.sort()
    s.setdefault("ready", 0)
    s.setdefault("boot_errors", [])
    s.update({
        "buttons": len(recs), "kind": kind, "presses": len(presses),
        "acknowledged": len(lat), "unacknowledged": len(presses) - len(lat),
        "unrecognised": sum(u["missing"] for u in s.get("not_recognised", [])),
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
    if s.get("skipped_busy"):
        typer.echo(f"{s['skipped_busy']} presses skipped: every button was still busy with "
                   "its last press (a TEST is 5 clicks and a quiet second); add --buttons or "
                   "lower --rate")
    if s["unrecognised"]:
        typer.echo(f"{s['unrecognised']} presses were not recognised by the firmware:")
        for u in s["not_recognised"]:
            typer.echo(f"  {u['button']}: {u['missing']} missing: {u['why']}")
    typer.echo(f"{s['presses']} {s['kind'].upper()} presses, {s['acknowledged']} "
               f"acknowledged, {s['unacknowledged']} not"
               + (f" ({s['pressing_s']} s of pressing, {s['elapsed_s']} s in all)"
                  if "pressing_s" in s else ""))
    if s["latency_s"]:
        latency = s["latency_s"]
        typer.echo(f"press-to-ACK latency: p50 {latency['p50']} s, p95 {latency['p95']} s, "
                   f"max {latency['max']} s; via {s['ack_paths']}")
    if s["ready"] == 0:
        typer.echo("what to do: is the gateway running, does it know the buttons (registry "
                   "reload takes ~2 s), and for --bridge is its [serial] port the printed pty?")
    c = s["cleanup"]
    if "removed_from" in c:
        typer.echo(f"the {c['devices']} simulated buttons were removed from {c['removed_from']}"
                   " (their events stay)")
    else:
        typer.echo("remove the simulated buttons from the gateway now (left there, they "
                   "would raise supervision-lost to dispatch):")
        for cmd in c["remove_with"]:
            typer.echo(f"  {cmd}")


SIM = common.command_help(sim, EPILOG)
