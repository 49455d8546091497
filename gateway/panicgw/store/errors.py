"""The store's one error, and the hint every "wrong DB" message ends with."""

from __future__ import annotations

USE_THE_GATEWAYS_DB = ("pass the gateway's config with --config (the file `panicgw run "
                       "--config` uses; the DB is <[gateway] data_dir>/gateway.db)")


class StoreError(RuntimeError):
    """The DB cannot be opened or is from a newer gateway version."""
