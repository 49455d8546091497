"""The gateway as the tools see it: which DB the daemon opens, and opening it safely.

Installers' and technicians' commands (``panictool provision``/``rekey``/``verify``/``sim``,
``panicgw devices``/``events``/``outbox``) must write to the very database the daemon reads.
The daemon opens ``<[gateway] data_dir>/gateway.db`` of its config file, so a tool finds the
DB the same way (``--config``, default :data:`DEFAULT_CONFIG`) unless it is given the path,
and never creates one: a mistyped path is an error, not a fresh registry nobody reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from panicgw import config as gwconfig
from panicgw.store import Store, StoreError

DEFAULT_CONFIG = Path("/etc/panicgw/gateway.toml")
ENV_CONFIG = "PANICGW_CONFIG"  # overrides DEFAULT_CONFIG (tests, non-standard installs)


class AccessError(RuntimeError):
    """The gateway DB cannot be located or opened; the message says what to do."""


def default_config() -> Path:
    return Path(os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)


def locate_db(db: str | os.PathLike[str] | None = None,
              config: str | os.PathLike[str] | None = None) -> Path:
    """The DB path: ``db`` when given, else ``<data_dir>/gateway.db`` of the gateway config
    (``config``, or :func:`default_config`). Raises AccessError naming both options."""
    if db is not None:
        return Path(db)
    cfg_path = Path(config) if config is not None else default_config()
    if not cfg_path.is_file():
        raise AccessError(
            f"no gateway config at {cfg_path}: pass --config with the gateway's config file "
            "(the one `panicgw run --config` uses) or --gateway-db with its database")
    try:
        cfg = gwconfig.load(cfg_path)
    except gwconfig.ConfigError as e:
        raise AccessError(str(e)) from None
    return cfg.db_path


def open_db(path: str | os.PathLike[str], *, readonly: bool = False) -> Store:
    """Open an existing gateway DB (refusing a missing file or one without the schema)."""
    try:
        return Store(path, create=False, readonly=readonly)
    except StoreError as e:
        raise AccessError(str(e)) from None
