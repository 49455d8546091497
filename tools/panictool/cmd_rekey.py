"""`panictool rekey`: a new key for a provisioned button, keeping its device id.

The id stays, so the registry entry, the site, the label and the event history stay too;
only the key changes (a leaked key, a lost sealed backup). The button's counter is not
touched, so the gateway keeps its replay window. Two ways to get the key to both ends:

- ``--gateway-db``: a new key is made here, written into the board's NVM (read back to
  check), then into the gateway database; a running daemon picks it up by itself.
- ``--use-key FILE``: the key the gateway already has, from
  ``panicgw devices rekey ID --key-file FILE`` on the Pi.

The key is printed nowhere. If the database update fails after the board has its new key,
the key is saved to a 0600 file so the gateway can be given it by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from panicgw import registry
from panicgw.store import Store, StoreError
from panictool import common, identity
from panictool.transport import TransportError
from panictool.transport_serial import SerialTransport, auto_port

EPILOG = """\
Examples:

  panictool rekey --gateway-db /var/lib/panicgw/panicgw.db     # on the Pi, board on USB
  # gateway first, then the board (laptop at the shop):
  panicgw devices rekey 1234ABCD --key-file 1234ABCD.key        # on the Pi
  panictool rekey --use-key 1234ABCD.key                        # with the button on USB

Exit codes: 0 rekeyed (or the board already had that key); 1 the board has no identity, or
the key file is for another device; 2 bad option or key file; 4 serial problem; 5 cannot
write the key file; 6 gateway DB unusable or the device is not registered in it.
"""


def _registered(gateway_db: Path, device_id: int, as_json: bool) -> None:
    if not gateway_db.exists():
        common.fail(common.REGISTRY, f"{gateway_db} does not exist",
                    "give the gateway's database (default /var/lib/panicgw/panicgw.db)", as_json)
    try:
        s = Store(gateway_db)
        try:
            known = s.get_device(device_id) is not None
        finally:
            s.close()
    except (StoreError, OSError) as e:
        common.fail(common.REGISTRY, f"cannot read {gateway_db}: {e}", as_json=as_json)
    if not known:
        common.fail(common.REGISTRY, f"device {device_id:08X} is not registered in {gateway_db}",
                    "register it first (panicgw devices import) or provision the board anew",
                    as_json, {"device_id": device_id})


def _save_for_gateway(device_id: int, key: bytes, key_file: Path | None) -> Path:
    path = key_file or Path(f"rekey-{device_id:08X}.key")
    registry.write_key_file(path, device_id, key)
    return path


def rekey(
    gateway_db: Path | None = typer.Option(None, "--gateway-db", help="Make a new key and put "
                                           "it into this gateway database (on the Pi)."),
    use_key: Path | None = typer.Option(None, "--use-key", help="Put this key on the board: "
                                        "the file from `panicgw devices rekey ID --key-file "
                                        "FILE` (or 32 hex digits in a file)."),
    key_file: Path | None = typer.Option(None, "--key-file", help="With --gateway-db: also "
                                         "write the new key to this file (mode 0600)."),
    port: str | None = typer.Option(None, "--port", help="Serial console port (default: the "
                                    "USB device with vendor 0x239A)."),
    no_reboot: bool = typer.Option(False, "--no-reboot", help="Leave the board in the REPL "
                                   "instead of restarting code.py."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON result (never the key)."),
) -> None:
    """Give a provisioned button a new key; its device id, site and history stay.

    The new key goes into the board's NVM over the serial raw REPL and is read back (as a
    fingerprint computed on the board), and into the gateway database (--gateway-db) or is
    taken from the gateway (--use-key). The replay window is kept: the button's counter
    does not restart.
    """
    if (gateway_db is None) == (use_key is None):
        common.fail(common.USAGE, "give exactly one of --gateway-db and --use-key",
                    "--gateway-db PATH makes a new key and updates the gateway; --use-key FILE "
                    "takes the key from `panicgw devices rekey ID --key-file FILE`", as_json)
    if key_file is not None and gateway_db is None:
        common.fail(common.USAGE, "--key-file goes with --gateway-db",
                    "with --use-key the key is already in that file", as_json)
    want_id: int | None = None
    key = b""
    if use_key is not None:
        try:
            want_id, key = registry.read_key_file(use_key)
        except registry.RegistryError as e:
            common.fail(common.USAGE, str(e), "use the file `panicgw devices rekey ID "
                        "--key-file FILE` wrote", as_json)

    result: dict[str, Any] = {"ok": True}
    try:
        used = port or auto_port()
        with SerialTransport(used) as t:
            t.enter_raw_repl()
            old = identity.board_identity(t)
            if old is None:
                common.fail(common.CHECK_FAILED, "the board has no identity to rekey",
                            "give it one with `panictool provision`", as_json)
            device_id, old_fp = old
            if want_id is not None and want_id != device_id:
                common.fail(common.CHECK_FAILED, f"{use_key} holds the key of device "
                            f"{want_id:08X}; this board is {device_id:08X}",
                            "connect the right button or make its key on the gateway: "
                            f"panicgw devices rekey {device_id:08X} --key-file FILE",
                            as_json, {"device_id": device_id})
            if gateway_db is not None:
                _registered(gateway_db, device_id, as_json)
                _, key = identity.new_identity()
            new_fp = identity.fingerprint(key)
            result.update(device_id=device_id, device_id_hex=f"{device_id:08X}", port=used,
                          old_fingerprint=old_fp, key_fingerprint=new_fp,
                          changed=new_fp != old_fp)
            if new_fp != old_fp:
                identity.write_identity(t, device_id, key)
                if identity.board_identity(t) != (device_id, new_fp):
                    common.fail(common.SERIAL, "the key read back from the board differs",
                                "run rekey again", as_json, {"device_id": device_id})
            if not no_reboot:
                t.soft_reboot(run_code=True)
    except TransportError as e:
        common.fail(common.SERIAL, f"writing the key failed: {e}", e.hint, as_json)

    if gateway_db is not None:
        try:
            s = Store(gateway_db)
            try:
                if not s.rekey(device_id, key):
                    raise StoreError("the device was removed meanwhile")
            finally:
                s.close()
            result["gateway_db"] = str(gateway_db)
        except Exception as e:  # StoreError, sqlite3 errors, OSError
            saved = _save_for_gateway(device_id, key, key_file)
            common.fail(common.REGISTRY, f"the board has its new key but the gateway database "
                        f"was not updated: {e}", f"the key is in {saved} (0600): on the gateway "
                        f"run `panicgw devices rekey {device_id:08X} --use-key {saved}`",
                        as_json, {"device_id": device_id, "key_file": str(saved)})
        if key_file is not None:
            try:
                _save_for_gateway(device_id, key, key_file)
            except OSError as e:
                common.fail(common.FILES, f"rekeyed, but writing {key_file} failed: "
                            f"{e.strerror}", as_json=as_json, extra={"device_id": device_id})
            result["key_file"] = str(key_file)
    if as_json:
        typer.echo(json.dumps(result))
        return
    if not result["changed"]:
        typer.echo(f"device {device_id:08X} already has this key (fingerprint {new_fp})")
        return
    where = f"; gateway DB {gateway_db} updated" if gateway_db is not None else ""
    typer.echo(f"device {device_id:08X} rekeyed on {used}: key fingerprint {old_fp} -> "
               f"{new_fp}{where}")
    typer.echo(f"next: panictool verify --gateway-db {gateway_db}" if gateway_db else
               "next: panictool verify --gateway http://PI:8081 (the gateway's status API) "
               "or --gateway-db on the Pi")


REKEY = common.command_help(rekey, EPILOG)
