"""Installer tools: flash, provision, verify and simulate panic buttons."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("panic-button")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
