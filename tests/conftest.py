"""Shared pytest configuration, and the order `make test` hands tests to its xdist workers."""

import os

import pytest
from hypothesis import HealthCheck, settings

# CI runs more examples; local runs stay quick.
settings.register_profile("ci", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

# The test files that take longest (about 8 s and more on two cores), longest first.
# `make test` hands whole files to its xdist workers (`--dist loadfile`: a module's console,
# browser or gateway fixture is set up once), in collection order: these go first, so no
# worker starts one of them while the others run out of work. A file missing here only
# starts later; nothing else changes.
LONG_FIRST = [
    "tests/demo/test_demo.py",
    "tests/gateway/test_fault.py",
    "tests/tools/test_tool_sim_e2e.py",
    "tests/tools/test_tool_leaves_running.py",
    "tests/tools/test_tool_sim_cli.py",
    "tests/journeys/test_installer_day.py",
    "tests/e2e/test_e2e.py",
    "tests/e2e/test_e2e_verify.py",
    "tests/journeys/test_gateway_install.py",
    "tests/gateway/test_db_access_cli.py",
    "tests/console/test_console_browser_sound.py",
    "tests/tools/test_tool_verify_remote.py",
    "tests/console/test_console_browser_map.py",
    "tests/gateway/test_setup.py",
    "tests/diag/test_diag_checks.py",
    "tests/diag/test_diag_running.py",
    "tests/tools/test_tool_console_cli.py",
    "tests/console/test_console_browser_gateway.py",
    "tests/diag/test_monitor.py",
    "tests/console/test_console_cli.py",
    "tests/journeys/test_counter_top.py",
    "tests/console/test_console_browser_live.py",
    "tests/dispatch/test_secrets_exposure.py",
    "tests/diag/test_diag_auth.py",
    "tests/dispatch/test_supervision_daemon.py",
    "tests/console/test_console_contract.py",
]
RANK = {path: i for i, path in enumerate(LONG_FIRST)}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long files first; a stable sort, so every file keeps its own order."""
    items.sort(key=lambda item: RANK.get(item.nodeid.split("::", 1)[0], len(RANK)))
