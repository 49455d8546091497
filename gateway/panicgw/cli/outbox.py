"""`panicgw outbox`: what is waiting on each delivery route, and sending dead letters again.

Routes: ``dispatch`` (the JSON webhook) and one ``sia:<name>`` per ``[[sia]]`` receiver
(docs/sia.md); each has its own delivery state, so an item can be delivered on one and
pending or dead on another. `panicgw outbox` alone prints each route's counts and items.

A dead letter is a message dispatch refused for good (a permanent 4xx such as a payload the
dispatch centre's schema rejected, or a check-in that expired). Once the cause is fixed (at
dispatch or in the gateway's config) a technician requeues it: the row goes back to pending
with its attempts reset, its dead letter is marked requeued (the history stays), and a
running daemon is told to look at the outbox now (else its forwarder finds it within its
poll interval, 5 s). Works with the daemon running or stopped (SQLite WAL).
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import typer

from panicgw import config as config_mod
from panicgw.cli import db as cli_db
from panicgw.store import PRIO_ALARM, PRIO_EVENT, PRIO_OTHER, PRIO_TROUBLE, Store

EXIT_OK = 0
EXIT_NONE = 1
EXIT_USAGE = 2
EXIT_DB = 3

PRIORITY_NAMES = {PRIO_ALARM: "alarm", PRIO_EVENT: "event", PRIO_TROUBLE: "trouble",
                  PRIO_OTHER: "other"}

app = typer.Typer(
    help="Per delivery route (dispatch, sia:<name>): counts and the messages not delivered; "
         "list pending and dead messages; requeue dead letters once the cause is fixed.",
    invoke_without_command=True,
)
DISPATCH = "dispatch"

CONFIG_OPT = typer.Option(None, "--config", "-c", envvar="PANICGW_CONFIG",
                          help=cli_db.CONFIG_HELP)
DB_OPT = typer.Option(None, "--gateway-db", "--db", help=cli_db.DB_HELP + " A running "
                      "daemon is then not woken and picks changes up within 5 s.")
JSON_OPT = typer.Option(False, "--json", help="Print JSON for scripts.")


def _open(config: Path | None, db: Path | None) -> tuple[Store, config_mod.Config | None]:
    return cli_db.open_store(config, db, readonly=False, config_exit=EXIT_USAGE,
                             db_exit=EXIT_DB)


def _wake_daemon(cfg: config_mod.Config | None) -> bool:
    """Ask a running daemon's forwarder to look at the outbox now (False: not running)."""
    if cfg is None:
        return False
    from panicgw.diag.status_api import status_endpoint

    ep = status_endpoint(cfg)
    if ep is None:
        return False
    req = urllib.request.Request(f"http://{ep[0]}:{ep[1]}/v1/outbox/wake", data=b"",
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=2.0) as r:
            return bool(json.loads(r.read(10_000)).get("woken"))
    except (OSError, ValueError, AttributeError):
        return False


def _daemon_status(cfg: config_mod.Config | None, db: Path) -> dict[str, Any] | None:
    """The running daemon's /v1/status (None: not running or not reachable). Found from the
    config, or from runtime.json beside the DB when only --gateway-db was given."""
    from panicgw.diag.status_api import pid_alive, status_endpoint

    if cfg is not None:
        ep = status_endpoint(cfg)
    else:
        try:
            info = json.loads((db.parent / "runtime.json").read_text())
            alive = pid_alive(int(info.get("pid") or 0))
            ep = ("127.0.0.1", int(info["status_port"])) if alive else None
        except (OSError, ValueError, TypeError, KeyError):
            ep = None
    if ep is None:
        return None
    try:
        with urllib.request.urlopen(f"http://{ep[0]}:{ep[1]}/v1/status", timeout=2.0) as r:
            doc = json.loads(r.read(4_000_000))
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


NEXT_TRY = {  # next_try code -> what it means (JSON ``next_try_text``, the footer)
    "due_now": "due now: the forwarder sends it at once",
    "retry": "its own retry time (dispatch answers)",
    "next_probe": "the next probe: dispatch is failing and this is the most urgent message",
    "after_probe": "after a probe succeeds: dispatch is failing, the most urgent goes first",
    "daemon_stopped": "when panicgw runs again (it sends everything pending at start)",
    "no_dispatch": "never: no [dispatch] url configured",
    "no_route": "never: the running daemon has no such [[sia]] receiver",
}
NEXT_TRY_CELL = {"due_now": "now", "retry": "", "next_probe": "probe",
                 "after_probe": "after probe", "daemon_stopped": "at start",
                 "no_dispatch": "never", "no_route": "never"}


def _route_status(status: dict[str, Any] | None, route: str) -> Any:
    """The running daemon's state of one route (dispatch, or a [[sia]] route's stats)."""
    if status is None or route == DISPATCH:
        return (status or {}).get(DISPATCH)
    return next((r for r in status.get("sia") or [] if isinstance(r, dict)
                 and r.get("route") == route), None)


def next_tries(rows: list[dict[str, Any]], status: dict[str, Any] | None,
               now: float, route: str = DISPATCH) -> None:
    """Set ``next_try_at`` (epoch or None), ``next_try`` (a code of :data:`NEXT_TRY`) and
    ``next_try_text`` on each row: when the forwarder will really send a pending message,
    never a time in the past.

    Rows must be in the forwarder's order (priority, then oldest), as ``outbox_list`` gives
    them. While dispatch is failing the forwarder sends one probe per pause, the most urgent
    pending message, and everything else only after a probe succeeds; a stopped daemon sends
    everything pending when it starts. A DC-09 route (``route``) paces the same way."""
    fwd = _route_status(status, route)
    paused_until = float((fwd or {}).get("paused_until") or 0.0) if isinstance(fwd, dict) \
        else 0.0
    failing = isinstance(fwd, dict) and (bool(fwd.get("failures_in_row"))
                                         or paused_until > now)
    probe_at = max(paused_until, now)
    first = True
    for r in rows:
        at: float | None = None
        if r["state"] != "pending":
            code = None
        elif status is None:
            code = "daemon_stopped"
        elif not isinstance(fwd, dict) or fwd.get("state") == "disabled":
            code = "no_dispatch" if route == DISPATCH else "no_route"
        elif not failing:
            at = max(float(r["next_at"]), now)
            code = "due_now" if at <= now else "retry"
        elif first:
            at, code = probe_at, "next_probe"
        else:
            at, code = max(probe_at, float(r["next_at"])), "after_probe"
        if r["state"] == "pending":
            first = False
        r["next_try_at"], r["next_try"] = at, code
        r["next_try_text"] = NEXT_TRY.get(code or "", "")


def _clock(t: float, now: float) -> str:
    from panicgw.cli.events import fmt_time

    text = fmt_time(t)
    return text[11:] if abs(t - now) < 43200 else text


def _row(r: dict[str, Any], now: float) -> dict[str, Any]:
    return {**r, "priority_name": PRIORITY_NAMES.get(r["priority"], str(r["priority"])),
            "age_s": round(now - r["created_at"], 1)}


ROUTE_OPT = typer.Option(None, "--route", "-r", help="Only this route: dispatch or "
                         "sia:<name> (a \\[\\[sia]] receiver; see `panicgw outbox`).")


def _check_route(route: str) -> None:
    if route != DISPATCH and not (route.startswith("sia:") and len(route) > 4):
        typer.echo(f"error: --route {route!r}: give dispatch or sia:<name> (the routes are "
                   "listed by `panicgw outbox`)", err=True)
        raise typer.Exit(EXIT_USAGE)


def _read(store: Store, states: tuple[str, ...], limit: int,
          route: str | None) -> list[dict[str, Any]]:
    """Items in ``states`` on every route (or one), each with its ``route``."""
    rows: list[dict[str, Any]] = []
    if route in (None, DISPATCH):
        rows += [{**r, "route": DISPATCH} for r in store.outbox_list(states, limit)]
    if route != DISPATCH:
        rows += [r for r in store.route_list(states, limit) if route in (None, r["route"])]
    return rows


def _annotate(rows: list[dict[str, Any]], status: dict[str, Any] | None,
              now: float) -> list[dict[str, Any]]:
    """Age, priority name and the real next try (per route, in its own order)."""
    rows = [_row(r, now) for r in rows]
    for route in dict.fromkeys(r["route"] for r in rows):
        next_tries([r for r in rows if r["route"] == route], status, now, route)
    return rows


@app.callback()
def summary(
    ctx: typer.Context,
    config: Path = CONFIG_OPT,
    db: Path = DB_OPT,
    limit: int = typer.Option(100, "--limit", "-n", min=1, max=100000,
                              help="At most this many items per route."),
    as_json: bool = JSON_OPT,
) -> None:
    """Alone: each delivery route (dispatch, and sia:<name> per \\[\\[sia]] receiver) with its
    pending/delivered/dead counts and the messages not delivered on it. Subcommands list
    them in detail and requeue dead letters.

    Exit codes: 0 everything delivered, 1 something pending or dead, 2 bad config, 3 no DB.
    """
    if ctx.invoked_subcommand is not None:
        return
    store, cfg = _open(config, db)
    try:
        counts = {DISPATCH: store.outbox_counts(), **store.route_counts()}
        rows = _read(store, ("pending", "dead"), limit, None)
    except sqlite3.Error as e:
        typer.echo(f"error: cannot read the outbox: {e}", err=True)
        raise typer.Exit(EXIT_DB) from None
    finally:
        store.close()
    empty = {"pending": 0, "delivered": 0, "dead": 0, "pending_alarms": 0}
    for r in (cfg.sia if cfg is not None else []):
        counts.setdefault(f"sia:{r.name}", dict(empty))
    now = time.time()
    rows = _annotate(rows, _daemon_status(cfg, store.path), now)
    routes = [{"route": name, **c, "items": [r for r in rows if r["route"] == name]}
              for name, c in counts.items()]
    waiting = any(c["pending"] or c["dead"] for c in counts.values())
    if as_json:
        typer.echo(json.dumps({"routes": routes}))
        raise typer.Exit(EXIT_NONE if waiting else EXIT_OK)
    from panicgw.diag.wording import fmt_age

    for rt in routes:
        typer.echo(f"{rt['route']}: {rt['pending']} pending ({rt['pending_alarms']} alarm(s)), "
                   f"{rt['delivered']} delivered, {rt['dead']} dead")
        for r in rt["items"]:
            seq = f" seq {r['seq']:04d}" if r.get("seq") is not None else ""
            typer.echo(f"  {r['id']:>6} {r['state']:<7} {r['priority_name']:<7} "
                       f"{r['event'] or '?':<20} {fmt_age(r['age_s'])} tries {r['attempts']}"
                       f"{seq}  {(r['last_error'] or '')[:60]}")
    if any(c["dead"] for c in counts.values()):
        typer.echo("Fix the cause, then `panicgw outbox requeue --all-dead [--route ROUTE]`.")
    raise typer.Exit(EXIT_NONE if waiting else EXIT_OK)


@app.command("list")
def list_cmd(
    config: Path = CONFIG_OPT,
    db: Path = DB_OPT,
    dead: bool = typer.Option(False, "--dead", help="Only dead letters."),
    route: str = ROUTE_OPT,
    limit: int = typer.Option(1000, "--limit", "-n", min=1, max=100000,
                              help="At most this many (most urgent, then oldest, first)."),
    as_json: bool = JSON_OPT,
) -> None:
    """List messages not delivered, on every route (dispatch, sia:<name>) or one: pending
    ones (retried automatically) and dead letters (refused for good, waiting for `panicgw
    outbox requeue`), with route, priority, age, attempts, the last error and when each
    will really be tried next (asked from the running daemon: while a route fails only its
    most urgent message probes, the rest follow once a probe succeeds; a stopped daemon
    sends everything when it starts).

    Examples: `panicgw outbox list`, `panicgw outbox list --dead --json`.

    Exit codes: 0 listed, 1 nothing to list, 2 bad arguments or config, 3 no/unreadable DB.
    """
    from panicgw.diag.wording import fmt_age

    if route is not None:
        _check_route(route)
    store, cfg = _open(config, db)
    try:
        rows = _read(store, ("dead",) if dead else ("pending", "dead"), limit, route)
    except sqlite3.Error as e:  # locked beyond the busy timeout, not a gateway DB
        typer.echo(f"error: cannot read the outbox: {e}", err=True)
        raise typer.Exit(EXIT_DB) from None
    finally:
        store.close()
    status = None if dead else _daemon_status(cfg, store.path)
    now = time.time()
    rows = _annotate(rows, status, now)
    rows.sort(key=lambda r: (r["priority"], r["created_at"], r["id"], r["route"] != DISPATCH))
    rows = rows[:limit]
    if as_json:
        typer.echo(json.dumps(rows))
        raise typer.Exit(EXIT_OK if rows else EXIT_NONE)
    if not rows:
        typer.echo("no dead letters" if dead else "outbox empty: everything was delivered")
        raise typer.Exit(EXIT_NONE)
    from rich.console import Console
    from rich.table import Table

    ndead = sum(1 for r in rows if r["state"] == "dead")
    table = Table(title=f"{len(rows)} message(s) not delivered ({ndead} dead)")
    routes = any(r["route"] != DISPATCH for r in rows)  # the column only when DC-09 is there
    for col in ("id", *(("route",) if routes else ()), "state", "priority", "event",
                "incident", "age", "tries", "next try", "last error"):
        wraps = col in ("incident", "last error")  # the rest stays readable on 80 columns
        table.add_column(col, no_wrap=not wraps, overflow="ellipsis" if wraps else "fold",
                         max_width=28 if wraps else None)
    for r in rows:
        state = "[bold red]dead[/]" if r["state"] == "dead" else "pending"
        prio = r["priority_name"]
        table.add_row(
            str(r["id"]), *((r["route"],) if routes else ()), state,
            f"[bold red]{prio}[/]" if r["priority"] == PRIO_ALARM else prio,
            r["event"] or "?", r["incident_id"], fmt_age(r["age_s"]), str(r["attempts"]),
            " ".join(x for x in (_clock(r["next_try_at"], now) if r["next_try_at"] else "",
                                 NEXT_TRY_CELL.get(r["next_try"] or "", "-")) if x) or "-",
            (r["last_error"] or "")[:80])
    Console().print(table)
    probes = [r for r in rows if r["next_try"] == "next_probe"]
    for probe in probes:
        typer.echo(f"{probe['route']} is failing: the most urgent message (id {probe['id']}) "
                   f"probes at {_clock(probe['next_try_at'], now)}, the rest follow once a "
                   "probe succeeds (`panicgw diag` for why)")
    if not probes and any(r["next_try"] == "daemon_stopped" for r in rows):
        typer.echo("the daemon is not running: pending messages go out when it starts "
                   "(`sudo systemctl start panicgw`)")
    if ndead:
        typer.echo("Fix the cause (see the last error; docs/dispatch-api.md, docs/sia.md), "
                   "then `panicgw outbox requeue --all-dead` (or the ids; `--route sia:<name>` "
                   "for a DC-09 route's).")


@app.command("requeue")
def requeue_cmd(
    ids: list[int] = typer.Argument(None, help="Outbox ids of dead letters (from `list`).",
                                    show_default=False),
    all_dead: bool = typer.Option(False, "--all-dead", help="Every dead letter."),
    route: str = typer.Option(DISPATCH, "--route", "-r", help="The route the items are dead "
                              "on: dispatch or sia:<name> (a \\[\\[sia]] receiver)."),
    config: Path = CONFIG_OPT,
    db: Path = DB_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Send dead letters again: back to pending, attempts reset, sent at once (a running
    daemon is woken; a stopped one sends them when it starts). Fix the cause first (token,
    payload, dispatch's site list): an unchanged refusal dead-letters them again.

    Examples: `panicgw outbox requeue 12 15`, `panicgw outbox requeue --all-dead`,
    `panicgw outbox requeue --route sia:centre 12` (DC-09: it keeps its sequence number).

    Exit codes: 0 requeued (ids that were not dead are named on stderr), 1 nothing matched
    (no such dead letter), 2 bad arguments or config, 3 no/unreadable DB.
    """
    if bool(ids) == all_dead:
        typer.echo("error: give outbox ids (see `panicgw outbox list --dead`) or --all-dead, "
                   "not both", err=True)
        raise typer.Exit(EXIT_USAGE)
    _check_route(route)
    store, cfg = _open(config, db)
    try:
        picked = None if all_dead else list(ids)
        moved = (store.requeue(picked, time.time()) if route == DISPATCH
                 else store.route_requeue(route, picked, time.time()))
    except sqlite3.Error as e:  # locked beyond the busy timeout, read-only file
        typer.echo(f"error: cannot update the outbox: {e}", err=True)
        raise typer.Exit(EXIT_DB) from None
    finally:
        store.close()
    missed = [i for i in dict.fromkeys(ids or []) if i not in moved]
    woken = _wake_daemon(cfg) if moved else False
    if as_json:
        typer.echo(json.dumps({"requeued": moved, "not_dead": missed, "daemon_woken": woken}))
    else:
        if moved:
            typer.echo(f"requeued {len(moved)} message(s): {', '.join(map(str, moved))}; "
                       + ("the running daemon is sending them now" if woken else
                          "the daemon sends them within 5 s (or when it starts)"))
        else:
            typer.echo("no dead letters " + ("to requeue" if all_dead else "with those ids"))
    if missed:
        typer.echo(f"not dead (pending, delivered or no such id): "
                   f"{', '.join(map(str, missed))}", err=True)
    raise typer.Exit(EXIT_OK if moved else EXIT_NONE)
