"""The checklist: which checks there are (``--only`` names these groups), in the order a
technician reads them, each isolated so one that crashes cannot hide the others; and a
whole `panicgw diag` run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from panicgw.diag.bundle import write_bundle
from panicgw.diag.checks.bridge import check_bridge
from panicgw.diag.checks.clock import check_clock
from panicgw.diag.checks.config import check_config
from panicgw.diag.checks.daemon import check_daemon
from panicgw.diag.checks.database import check_database
from panicgw.diag.checks.devices import check_counter_space, check_devices
from panicgw.diag.checks.dispatch import check_dispatch
from panicgw.diag.checks.http import check_http
from panicgw.diag.checks.mqtt import check_mqtt
from panicgw.diag.checks.outbox import check_dead_letters, check_outbox
from panicgw.diag.checks.rejections import check_rejections
from panicgw.diag.checks.sia import check_sia
from panicgw.diag.context import FAIL, Context, Result, Thresholds, exit_code, load_context

CheckFn = Callable[[Context], "Result | list[Result]"]
CHECKS: list[tuple[str, CheckFn]] = [
    ("config", check_config),
    ("daemon", check_daemon),
    ("database", check_database),
    ("clock", check_clock),
    ("bridge", check_bridge),
    ("http", check_http),
    ("mqtt", check_mqtt),
    ("dispatch", check_dispatch),
    ("sia", check_sia),
    ("outbox", check_outbox),
    ("dead_letters", check_dead_letters),
    ("devices", check_devices),
    ("counters", check_counter_space),
    ("rejections", check_rejections),
]


def run_checks(ctx: Context, only: Iterable[str] | None = None) -> list[Result]:
    """Every check (or those named in ``only``), each isolated, findings redacted."""
    wanted = set(only) if only else None
    results: list[Result] = []
    for name, fn in CHECKS:
        if wanted is not None and name not in wanted:
            continue
        try:
            got = fn(ctx)
        except Exception as e:  # a broken check must not hide the others
            got = Result(name, name, FAIL, f"check crashed: {type(e).__name__}: {e}",
                         "Report this with `panicgw diag --bundle diag.tar.gz`.")
        for r in got if isinstance(got, list) else [got]:
            r.finding = ctx.redactor.text(r.finding)
            r.hint = ctx.redactor.text(r.hint)
            r.data = ctx.redactor.data(r.data)
            results.append(r)
    return results


class BundleError(Exception):
    """The support bundle cannot be written (the message says why)."""


@dataclass
class Report:
    results: list[Result]
    exit_code: int  # 0 all PASS/SKIP, 1 warnings, 2 failures
    daemon_running: bool


def diagnose(config_path: Path | None, thresholds: Thresholds,
             only: Iterable[str] | None = None, bundle: Path | None = None) -> Report:
    """`panicgw diag`: the context, the checks, and the support bundle when asked for.
    Raises BundleError when the bundle cannot be written; the checks never raise."""
    ctx = load_context(config_path, thresholds)
    try:
        results = run_checks(ctx, only)
        if bundle is not None:
            try:
                write_bundle(ctx, results, bundle)
            except (OSError, RuntimeError) as e:  # RuntimeError: a secret would be in it
                raise BundleError(str(e)) from e
    finally:
        ctx.close()
    return Report(results, exit_code(results), ctx.running)
