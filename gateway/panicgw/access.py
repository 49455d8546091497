"""The gateway as the tools see it: the registry file format, which DB the daemon opens, and
opening it safely. The one module of panicgw that tools (panictool, the demo) import.

Installers' and technicians' commands (``panictool provision``/``rekey``/``verify``/``sim``,
``panicgw devices``/``events``/``outbox``) must write to the very database the daemon reads.
The daemon opens ``<[gateway] data_dir>/gateway.db`` of its config file, so a tool finds the
DB the same way (``--config``, default :data:`DEFAULT_CONFIG`) unless it is given the path,
and never creates one: a mistyped path is an error, not a fresh registry nobody reads. A
tool that only looks opens it read-only (``readonly=True``: SQLite ``mode=ro``).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from panicgw import config as gwconfig
from panicgw.registry import (
    FORMAT,
    KEY_LEN,
    PATHS,
    SITE_KINDS,
    DeviceRecord,
    KeyConflictError,
    KeyFile,
    RegistryError,
    SiteRecord,
    read_export,
    read_key_file,
    read_key_file_full,
    record_from_dict,
    validate,
    write_export,
    write_key_file,
    write_private,
)
from panicgw.store import Store, StoreError

__all__ = [
    "DEFAULT_CONFIG", "ENV_CONFIG", "FORMAT", "KEY_LEN", "PATHS", "SERVICE_USER", "SITE_KINDS",
    "AccessError", "DeviceRecord", "KeyConflictError", "KeyFile", "RegistryError", "SiteRecord",
    "Store", "StoreError", "default_config", "import_command", "locate_db", "open_db",
    "read_export", "read_key_file", "read_key_file_full", "record_from_dict", "register",
    "validate", "write_export", "write_key_file", "write_private",
]

DEFAULT_CONFIG = Path("/etc/panicgw/gateway.toml")
ENV_CONFIG = "PANICGW_CONFIG"  # overrides DEFAULT_CONFIG (tests, non-standard installs)
SERVICE_USER = "panicgw"  # `panicgw setup`'s user: owns the config (0600) and the DB (0600)


class AccessError(RuntimeError):
    """The gateway DB cannot be located or opened; the message says what to do."""


def default_config() -> Path:
    return Path(os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)


def import_command(export: str | os.PathLike[str] | None, user: str = SERVICE_USER,
                   options: tuple[str, ...] = ()) -> str:
    """How the gateway's admin imports an export file: as ``user``, who owns the config and
    the DB, with the file (0600, the admin's own) read by the admin's shell onto stdin.
    ``export`` None: ``FILE``; ``user`` and ``options`` are shell words already."""
    src = "FILE" if export is None else shlex.quote(str(export))
    return " ".join(["sudo -u", user, "panicgw devices import -", *options, "<", src])


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
    """Open an existing gateway DB (refusing a missing file or one without the schema);
    ``readonly``: with SQLite's ``mode=ro``, for a tool that only reads."""
    try:
        return Store(path, create=False, readonly=readonly)
    except StoreError as e:
        raise AccessError(str(e)) from None


def register(db: Store | str | os.PathLike[str], record: DeviceRecord, *,
             allow_older_key: bool = False) -> None:
    """Upsert the site and the device into the gateway DB: an opened :class:`Store`, or the
    path of an existing one (opened with :func:`open_db`, which never creates a DB: a
    mistyped path raises ``AccessError`` instead of becoming a registry nobody reads). Key
    generation rules as in ``Store.upsert_device`` (raises :class:`KeyConflictError`)."""
    validate(record)
    if isinstance(db, Store):
        db.upsert_device(record, allow_older_key=allow_older_key)
        return
    store = open_db(db)
    try:
        store.upsert_device(record, allow_older_key=allow_older_key)
    finally:
        store.close()
