"""Installer tools: flash, provision, verify and simulate panic buttons."""

from panicgw import __version__

__all__ = ["__version__"]
