"""`panictool rekey`: a new key for a provisioned button, keeping its device id.

The id stays, so the registry entry, the site, the label and the event history stay too;
the key changes (a leaked key, a lost sealed backup, a button at the top of its counter
space) and with it the counter restarts at both ends: the new key and a restarted counter
go into the board's NVM in one write (``identity.write_new_key``), and the gateway restarts
the device's replay window with every new key. No frame made with an old key passes the new
key's tag, so the counters can be used again; the gateway keeps events, incident ids and
dispatch keys of each key generation apart. Two ways to get the key to both ends:

- on the gateway (``--config``, default /etc/panicgw/gateway.toml, or ``--gateway-db``): a
  new key is made here, written into the board's NVM (read back to check), then into the
  gateway's DB, which bumps the device's key generation; a running daemon picks it up by
  itself. If the DB update fails, the board gets its old key and counter back: nothing
  changed.
- ``--use-key FILE``: the key the gateway already has, from
  ``panicgw devices rekey ID --key-file FILE`` on the Pi (its key generation with it).

A board that already has the key is left alone, counter included (running the command
twice must not restart a counter the gateway has already seen frames of).

The key is printed nowhere. Only if the DB update fails *and* the old key cannot be put
back is the new key saved to a 0600 file, and the message says how to finish.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from panicbutton import nvmstore
from panicgw import access
from panictool import common, identity
from panictool.transport import TransportError
from panictool.transport_serial import SerialTransport, auto_port

EPILOG = """\
Examples:

  panictool rekey --config /etc/panicgw/gateway.toml   # on the Pi, the button on its USB
  # gateway first, then the board (laptop at the shop):
  panicgw devices rekey 1234ABCD --key-file 1234ABCD.key        # on the Pi
  panictool rekey --use-key 1234ABCD.key                        # with the button on USB

--config names the gateway's data_dir and so the DB `panicgw run` opens
(<data_dir>/gateway.db); --gateway-db gives that file itself. Without either (and without
--use-key) the default /etc/panicgw/gateway.toml is used. A missing file or one that is not
a gateway DB is refused before the board is touched.

The board's counter restarts with the new key (its next boot starts epoch 1); the gateway
restarts the device's replay window with it, so the button's next frames are accepted.

Exit codes: 0 rekeyed (or the board already had that key); 1 the board has no identity, or
the key file is for another device; 2 bad option or key file; 4 serial problem; 5 cannot
write the key file; 6 gateway DB unusable or the device is not registered in it (the board
keeps its old key).
"""


def _save_for_gateway(device_id: int, key: bytes, key_file: Path | None,
                      key_gen: int | None) -> Path:
    path = key_file or Path(f"rekey-{device_id:08X}.key")
    extra = {"key_gen": key_gen} if key_gen is not None else {}
    access.write_key_file(path, device_id, key, **extra)
    return path


def _key_gen_in(path: Path) -> int | None:
    """The key generation a key file from `panicgw devices rekey --key-file` carries."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    gen = doc.get("key_gen") if isinstance(doc, dict) else None
    return gen if isinstance(gen, int) and not isinstance(gen, bool) and gen > 0 else None


def _generation(value: Any) -> int | None:
    """``Store.rekey``'s answer as a key generation (the DB's bumped key_gen), or None
    when that Store reports only success."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def rekey(
    config: Path | None = typer.Option(None, "--config", help="On the gateway: make a new key "
                                       "and put it into the DB of this config, the one "
                                       "`panicgw run --config` opens (default "
                                       "/etc/panicgw/gateway.toml)."),
    gateway_db: Path | None = typer.Option(None, "--gateway-db", help="On the gateway: that "
                                           "DB itself (<data_dir>/gateway.db) instead of "
                                           "--config."),
    use_key: Path | None = typer.Option(None, "--use-key", help="Put this key on the board: "
                                        "the file from `panicgw devices rekey ID --key-file "
                                        "FILE` (or 32 hex digits in a file)."),
    key_file: Path | None = typer.Option(None, "--key-file", help="On the gateway: also "
                                         "write the new key to this file (mode 0600)."),
    port: str | None = typer.Option(None, "--port", help="Serial console port (default: the "
                                    "USB device with vendor 0x239A)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON result (never the key)."),
) -> None:
    """Give a provisioned button a new key and a fresh counter; its device id, site and
    history stay.

    The new key goes into the board's NVM over the serial raw REPL together with a
    restarted counter (one write, read back; the key is checked as a fingerprint computed on
    the board), and into the gateway's DB (--config/--gateway-db, which bumps the device's
    key generation and restarts its replay window) or is taken from the gateway (--use-key,
    after `panicgw devices rekey`, which did the same there). This is also the way out for a
    button at the top of its counter space (`panicgw diag`: devices.counter_space). The
    button runs its code.py again afterwards, whatever happened.
    """
    on_gateway = gateway_db is not None or config is not None
    if on_gateway and use_key is not None:
        common.fail(common.USAGE, "give --use-key or the gateway's DB (--config/--gateway-db),"
                    " not both", "--config makes a new key and updates the gateway; "
                    "--use-key FILE takes the key from `panicgw devices rekey ID --key-file "
                    "FILE`", as_json)
    if key_file is not None and use_key is not None:
        common.fail(common.USAGE, "--key-file goes with the gateway's DB, not --use-key",
                    "with --use-key the key is already in that file", as_json)
    want_id: int | None = None
    key = b""
    key_gen: int | None = None
    store: access.Store | None = None
    if use_key is not None:
        try:
            want_id, key = access.read_key_file(use_key)
        except access.RegistryError as e:
            common.fail(common.USAGE, str(e), "use the file `panicgw devices rekey ID "
                        "--key-file FILE` wrote", as_json)
        key_gen = _key_gen_in(use_key)
    else:
        try:
            store = access.open_db(access.locate_db(gateway_db, config))
        except (access.AccessError, OSError) as e:
            common.fail(common.REGISTRY, str(e), "on a laptop use --use-key FILE from "
                        "`panicgw devices rekey ID --key-file FILE`", as_json)
    try:
        result = _rekey(store, want_id, key, key_gen, use_key, key_file, port, as_json)
    finally:
        if store is not None:
            store.close()
    _report(result, as_json)


def _rekey(store: access.Store | None, want_id: int | None, key: bytes, key_gen: int | None,
           use_key: Path | None, key_file: Path | None, port: str | None,
           as_json: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"ok": True}
    try:
        used = port or auto_port()
        with SerialTransport(used) as t:  # code.py runs again on every way out
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
            if store is not None:
                if store.get_device(device_id) is None:
                    common.fail(common.REGISTRY, f"device {device_id:08X} is not registered "
                                f"in {store.path}", "register it first (`panicgw devices "
                                "import FILE` with its provision export) or provision the "
                                "board anew", as_json, {"device_id": device_id})
                _, key = identity.new_identity()
            new_fp = identity.fingerprint(key)
            result.update(device_id=device_id, device_id_hex=f"{device_id:08X}", port=used,
                          old_fingerprint=old_fp, key_fingerprint=new_fp,
                          changed=new_fp != old_fp, key_gen=key_gen)
            before = identity.key_and_counter_bytes(t)
            epoch = nvmstore.EpochStore(bytearray(before)).read()
            result["counter_epoch_before"] = epoch
            result["counter_restarted"] = False
            if new_fp != old_fp:
                identity.write_new_key(t, device_id, key)
                if identity.board_identity(t) != (device_id, new_fp) or \
                        identity.board_epoch(t) != 0:
                    common.fail(common.SERIAL, "the key or counter read back from the board "
                                "differs", "run rekey again", as_json,
                                {"device_id": device_id})
                result["counter_restarted"] = True
            if store is not None:
                result["key_gen"] = _update_gateway(t, store, device_id, key, before,
                                                    key_file, as_json)
                result["gateway_db"] = str(store.path)
    except TransportError as e:
        common.fail(common.SERIAL, f"writing the key failed: {e}", e.hint, as_json)
    if store is not None and key_file is not None:
        try:
            _save_for_gateway(result["device_id"], key, key_file, result["key_gen"])
        except OSError as e:
            common.fail(common.FILES, f"rekeyed, but writing {key_file} failed: "
                        f"{e.strerror}", as_json=as_json,
                        extra={"device_id": result["device_id"]})
        result["key_file"] = str(key_file)
    return result


def _update_gateway(t: SerialTransport, store: access.Store, device_id: int, key: bytes,
                    before: bytes, key_file: Path | None, as_json: bool) -> int | None:
    """The DB gets the key the board now has; if it cannot, the board gets its old key and
    counter back (``before``: both ends agree again) and the command fails."""
    try:
        gen = store.rekey(device_id, key)
        if not gen:
            raise access.StoreError("the device was removed meanwhile")
        return _generation(gen)
    except Exception as e:  # StoreError, sqlite3 errors, OSError
        try:
            identity.restore_identity(t, before)
        except TransportError:
            saved = _save_for_gateway(device_id, key, key_file, None)
            common.fail(common.REGISTRY, f"the board has its new key but the gateway DB was "
                        f"not updated ({e}), and the old key could not be put back",
                        f"the new key is in {saved} (0600); once the DB is writable run "
                        "`panictool rekey --config /etc/panicgw/gateway.toml` again with "
                        "the button on USB (a fresh key for both ends), then delete that "
                        "file", as_json, {"device_id": device_id, "key_file": str(saved)})
        common.fail(common.REGISTRY, f"the gateway DB was not updated ({e}); the board got "
                    "its old key back (and its counter), nothing changed", "fix the DB problem "
                    "and run rekey again", as_json, {"device_id": device_id})


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result))
        return
    device_id = result["device_id"]
    gen = f" (key generation {result['key_gen']})" if result.get("key_gen") else ""
    if not result["changed"]:
        typer.echo(f"device {device_id:08X} already has this key (fingerprint "
                   f"{result['key_fingerprint']}){gen}; its counter was left as it is")
        if result["counter_epoch_before"] >= nvmstore.EPOCH_MAX:
            typer.echo(f"warning: its counter is at the last epoch 0x{nvmstore.EPOCH_MAX:04X}: "
                       "give it a new key (`panicgw devices rekey "
                       f"{device_id:08X} --key-file {device_id:08X}.key` on the Pi, then "
                       f"`panictool rekey --use-key {device_id:08X}.key`)")
        return
    where = f"; gateway DB {result['gateway_db']} updated" if "gateway_db" in result else ""
    typer.echo(f"device {device_id:08X} rekeyed on {result['port']}: key fingerprint "
               f"{result['old_fingerprint']} -> {result['key_fingerprint']}{gen}{where}")
    typer.echo(f"counter restarted (was epoch 0x{result['counter_epoch_before']:04X}; the "
               "button's next boot starts epoch 1)")
    typer.echo("next: panictool verify  (the button sends a TEST; it passes on the "
               "gateway's ACK signed with the new key)")


REKEY = common.command_help(rekey, EPILOG)
