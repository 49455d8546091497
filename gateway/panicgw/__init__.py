"""Panic-button gateway: receives, verifies, stores and forwards alarms (runs on a Pi)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("panic-button")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
