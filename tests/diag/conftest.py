"""Fixtures for tests/diag; the helpers live in diagkit.py (a unique module name, so
no other folder's conftest can shadow them)."""

from diagkit import certs, gw, loop_thread, mosquitto  # noqa: F401
