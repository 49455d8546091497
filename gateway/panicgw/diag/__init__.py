"""`panicgw diag`: checks that each return PASS/WARN/FAIL (or SKIP) with a one-line finding
and, for anything not PASS, a fix hint a technician can act on (docs/diagnostics.md explains
each); also the support bundle and what `panicgw monitor` follows.

Why it is shaped this way:
- It must work on a broken gateway: every check is isolated (an exception in one becomes a
  FAIL naming it, never a crash of the whole run), and nothing needs the daemon.
- When the daemon runs it owns the serial port and knows live state, so we ask its local
  status API (``GET /v1/status``); when it is stopped we read config and DB (read-only,
  through ``panicgw.store.inspect``) and speak the bridge link protocol ourselves. We never
  open a serial port another process holds.
- Findings can contain text from config, servers and the DB; every one passes through a
  :class:`Redactor` so a token or key never reaches the terminal, JSON or a support bundle.

Where things are: ``context`` (verdicts, thresholds, the shared context), ``checks/``
(one module per subject), ``run`` (their order), ``bundle``, ``redact``, ``status_api``
(the daemon's), ``linkclient`` (the bridge's), ``follow`` (monitor).
"""

from panicgw.diag.bundle import write_bundle
from panicgw.diag.checks.bridge import check_bridge, find_bridge_port
from panicgw.diag.checks.clock import BUILD_FLOOR, check_clock
from panicgw.diag.checks.devices import check_counter_space
from panicgw.diag.checks.http import check_http
from panicgw.diag.context import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    Context,
    Result,
    Thresholds,
    exit_code,
    load_context,
)
from panicgw.diag.redact import Redactor
from panicgw.diag.run import CHECKS, BundleError, Report, diagnose, run_checks

__all__ = [
    "BUILD_FLOOR", "CHECKS", "BundleError", "FAIL", "PASS", "SKIP", "WARN", "Context", "Redactor",
    "Report", "Result", "Thresholds", "check_bridge", "check_clock", "check_counter_space",
    "check_http", "diagnose", "exit_code", "find_bridge_port", "load_context", "run_checks",
    "write_bundle",
]
