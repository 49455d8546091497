"""`panictool provision`: give a flashed button its identity and register it with its site.

Order matters: the registry (the gateway's DB, or the export file) is opened and checked
first, so a typo costs nothing; settings.toml goes through the drive (CircuitPython reloads
after a file write); the key goes into NVM over the raw REPL (entering the REPL stops
auto-reload); the device is registered while the board is still stopped, and if that
fails the board gets its old identity and settings back; then code.py runs again with a key
the gateway already knows, and the label is made. The key is printed nowhere;
``--key-file`` writes it to a 0600 file on request. The Wi-Fi password never goes on the
command line (shell history, ``ps``): a hidden prompt, a file or the environment.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from panicbutton import FIRMWARE_VERSION
from panicbutton.settings import KEYS, SettingsError
from panicbutton.settings import parse as parse_settings
from panicgw import access
from panicproto import airtime
from panictool import common, identity, label
from panictool.cmd_flash import pick_circuitpy
from panictool.transport import TransportError
from panictool.transport_serial import SerialTransport, auto_port

RADIO = airtime.region(airtime.DEFAULT_REGION)  # regional radio defaults: one source

EPILOG = """\
Examples:

  panictool provision --site-name "Toko Maju" --kind shop \\
      --address "Jl. Merdeka 12, Bandung" --lat -6.9147 --lon 107.6098 \\
      --contact "Ibu Sari" --phone "+62 812 5555 0101" --export today.json
                                   # laptop; then on the Pi:
                                   # sudo -u panicgw panicgw devices import - < today.json
  panictool provision ... --config /etc/panicgw/gateway.toml
                                   # on the Pi: straight into the DB the daemon opens
  panictool provision ... --wifi-ssid TokoMaju --gateway-url http://192.168.1.10:8080
                                   # Wi-Fi button (paths lora+wifi): asks for the password

The registry must exist: --config (default /etc/panicgw/gateway.toml, or $PANICGW_CONFIG)
names the gateway's data_dir and so the DB `panicgw run` opens (<data_dir>/gateway.db);
--gateway-db gives that file itself. A missing file or one that is not a gateway DB is
refused before the board is touched: provision never creates the gateway's DB.

The Wi-Fi password is asked for (hidden) when --wifi-ssid is given; for scripts use
--wifi-password-file FILE (- reads one line from stdin) or the environment variable
PANICTOOL_WIFI_PASSWORD. It is stored in the board's settings.toml and printed nowhere.

Exit codes: 0 provisioned and registered; 1 the board already has an identity (use
--force); 2 bad option; 3 no CIRCUITPY drive; 4 serial problem while writing the key;
5 cannot write settings.toml, the label or the key file; 6 gateway DB or export file unusable,
or bad site details (the board is then left as it was).
"""
WIFI_PASSWORD_ENV = "PANICTOOL_WIFI_PASSWORD"


def _toml_value(v: str | int) -> str:
    if isinstance(v, int):
        return str(v)
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def settings_toml(values: dict[str, str | int]) -> str:
    """The non-secret settings as CircuitPython's settings.toml (strings and integers)."""
    lines = ["# Written by `panictool provision`. Non-secret: the device key is in NVM.",
             "# docs/firmware.md explains every setting."]
    for k in KEYS:
        if k in values and values[k] not in (None, ""):
            lines.append(f"{k} = {_toml_value(values[k])}")
    return "\n".join(lines) + "\n"


def _wifi_password(ssid: str, password_file: Path | None, as_json: bool) -> str:
    """The shop's Wi-Fi password from a file, the environment or a hidden prompt: never a
    command-line value, which shell history and ``ps`` would keep."""
    if not ssid:
        if password_file is not None:
            common.fail(common.USAGE, "--wifi-password-file goes with --wifi-ssid",
                        as_json=as_json)
        return ""
    if password_file is not None:
        try:
            text = sys.stdin.readline() if str(password_file) == "-" else \
                password_file.read_text()
        except OSError as e:
            common.fail(common.USAGE, f"cannot read {password_file}: {e.strerror}",
                        as_json=as_json)
        return text.rstrip("\r\n")
    if os.environ.get(WIFI_PASSWORD_ENV):
        return os.environ[WIFI_PASSWORD_ENV]
    if sys.stdin.isatty():
        return str(typer.prompt(f"Wi-Fi password for {ssid}", hide_input=True))
    common.fail(common.USAGE, f"the Wi-Fi password for {ssid!r} is needed",
                "run provision in a terminal (it asks), or pass --wifi-password-file FILE "
                f"(- for stdin) or set {WIFI_PASSWORD_ENV}", as_json)


def _refuse_password_value(value: str | None) -> None:
    if value is not None:
        raise typer.BadParameter(
            "a password on the command line stays in shell history and shows in `ps`: "
            "leave it out and type it at the prompt, or use --wifi-password-file FILE or "
            f"{WIFI_PASSWORD_ENV}")


def open_registry(gateway_db: Path | None, config: Path | None, export: Path | None,
                  as_json: bool) -> tuple[access.Store | None, list[access.DeviceRecord]]:
    """The gateway DB (opened for writing, never created) and/or the export file's devices,
    checked before the board is touched."""
    store = None
    if gateway_db is not None or config is not None or (
            export is None and access.default_config().is_file()):
        try:
            store = access.open_db(access.locate_db(gateway_db, config))
        except (access.AccessError, OSError) as e:
            common.fail(common.REGISTRY, str(e), as_json=as_json)
    elif export is None:
        common.fail(common.USAGE, "say where to register the device",
                    f"on a laptop --export FILE (then `{access.import_command(None)}` on the "
                    "gateway); on the gateway --config (default /etc/panicgw/gateway.toml) "
                    "or --gateway-db <data_dir>/gateway.db", as_json)
    existing: list[access.DeviceRecord] = []
    if export is not None and export.exists():
        try:
            existing = access.read_export(export)
        except access.RegistryError as e:
            if store is not None:
                store.close()
            common.fail(common.REGISTRY, str(e), as_json=as_json)
    return store, existing


def provision(
    site_name: str = typer.Option(..., "--site-name", help="Shop or home name dispatch sees."),
    kind: str = typer.Option(..., "--kind", help="shop or home."),
    address: str = typer.Option(..., "--address", help="Street address for the patrol."),
    lat: float = typer.Option(..., "--lat", help="Latitude, decimal degrees (e.g. -6.9147)."),
    lon: float = typer.Option(..., "--lon", help="Longitude, decimal degrees (e.g. 107.6098)."),
    contact: str = typer.Option("", "--contact", help="Person to call."),
    phone: str = typer.Option("", "--phone", help="Their phone number."),
    label_text: str = typer.Option("", "--label", help="Button label, e.g. 'counter' "
                                   "(default: the site name)."),
    config: Path | None = typer.Option(None, "--config", help="On the gateway: register into "
                                       "the DB of this config, the one `panicgw run --config` "
                                       "opens (default /etc/panicgw/gateway.toml)."),
    gateway_db: Path | None = typer.Option(None, "--gateway-db", help="On the gateway: "
                                           "register into this DB (<data_dir>/gateway.db) "
                                           "instead of --config."),
    export: Path | None = typer.Option(None, "--export", help="Add the device to this export "
                                       "file (created 0600) for `panicgw devices import`."),
    drive: Path | None = typer.Option(None, "--drive", help="CIRCUITPY mount point (default: "
                                      "found in the mount table)."),
    port: str | None = typer.Option(None, "--port", help="Serial console port (default: the "
                                    "USB device with vendor 0x239A)."),
    region: str = typer.Option(RADIO.name, "--region", help="AS923-2 (Indonesia), AS923, "
                               "EU868, US915."),
    frequency: str = typer.Option("", "--frequency", help="MHz, e.g. 921.4 (default: the "
                                  "region's); the bridge must match."),
    sf: int = typer.Option(RADIO.default_sf, "--sf", help="Base spreading factor (the bridge "
                           "listens on it)."),
    sf_max: int | None = typer.Option(None, "--sf-max", help="Escalation ceiling (default: "
                                      "the slowest the region's dwell limit allows)."),
    tx_power: int = typer.Option(RADIO.default_tx_power, "--tx-power",
                                 help="Radio power in dBm (5-23)."),
    lora: bool = typer.Option(True, "--lora/--no-lora", help="Use the LoRa radio."),
    wifi_ssid: str = typer.Option("", "--wifi-ssid", help="Shop Wi-Fi network (Wi-Fi boards)."),
    wifi_password_file: Path | None = typer.Option(None, "--wifi-password-file",
                                                   help="Read the shop's Wi-Fi password "
                                                   "from this file (- for stdin); default: "
                                                   "asked for, hidden, or "
                                                   "$PANICTOOL_WIFI_PASSWORD."),
    wifi_password: str | None = typer.Option(None, "--wifi-password", hidden=True,
                                             callback=_refuse_password_value),
    gateway_url: str = typer.Option("", "--gateway-url", help="Gateway HTTP address for Wi-Fi, "
                                    "e.g. http://192.168.1.10:8080."),
    supervision_s: int = typer.Option(3600, "--supervision", help="Heartbeat interval, "
                                      "seconds."),
    board_profile: str = typer.Option("", "--board-profile", help="PB_BOARD, e.g. "
                                      "feather_esp32s3_rfm95_wing."),
    label_dir: Path = typer.Option(Path("."), "--label-dir", help="Where the label SVG/PNG "
                                   "go."),
    key_file: Path | None = typer.Option(None, "--key-file", help="Also write the key to this "
                                         "file (mode 0600), e.g. for a sealed backup."),
    force: bool = typer.Option(False, "--force", help="Re-provision a board that already has "
                               "an identity (its old id stops working)."),
    show_qr: bool = typer.Option(True, "--qr/--no-qr", help="Print the QR code in the "
                                 "terminal."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON result (never the key)."),
) -> None:
    """Give a flashed button a new device id and key, its settings, and register its site.

    Writes the non-secret settings.toml onto CIRCUITPY, the id and key into the board's NVM
    over the serial raw REPL (read back to check), registers device and site in the gateway
    DB (--config or --gateway-db, on the gateway) and/or an export file (--export), and makes
    a label (SVG with text, PNG of the QR code, QR in the terminal). The QR holds the device
    id and site name only. Whatever happens, the button runs its code.py again afterwards.
    """
    paths = (["lora"] if lora else []) + (["wifi"] if wifi_ssid else [])
    password = _wifi_password(wifi_ssid, wifi_password_file, as_json)
    raw: dict[str, Any] = {
        "PB_REGION": region, "PB_FREQUENCY_MHZ": frequency, "PB_SF": sf,
        "PB_SF_MAX": sf_max, "PB_TX_POWER": tx_power, "PB_LORA": int(lora),
        "PB_WIFI_SSID": wifi_ssid, "PB_WIFI_PASSWORD": password,
        "PB_GATEWAY_URL": gateway_url, "PB_SUPERVISION_S": supervision_s,
        "PB_BOARD": board_profile,
    }
    try:
        parsed = parse_settings(raw)  # the firmware's own checks, before touching anything
    except SettingsError as e:
        common.fail(common.USAGE, f"settings: {e}", as_json=as_json)
    if not paths:
        common.fail(common.USAGE, "the button needs a path: keep LoRa on or give --wifi-ssid",
                    as_json=as_json)
    site = access.SiteRecord(site_name.strip(), kind, address, lat, lon, contact, phone)
    store, in_export = open_registry(gateway_db, config, export, as_json)
    try:
        _provision(store, in_export, site, paths, parsed, raw, frequency, label_text,
                   site_name, kind, address, lat, lon, export, drive, port, key_file,
                   label_dir, force, show_qr, as_json)
    finally:
        if store is not None:
            store.close()


def _provision(store: access.Store | None, in_export: list[access.DeviceRecord],
               site: access.SiteRecord, paths: list[str], parsed: Any,
               raw: dict[str, Any], frequency: str, label_text: str, site_name: str,
               kind: str, address: str, lat: float, lon: float, export: Path | None,
               drive: Path | None, port: str | None, key_file: Path | None,
               label_dir: Path, force: bool, show_qr: bool, as_json: bool) -> None:
    taken = {d.device_id for d in in_export}
    if store is not None:
        taken |= {d.device_id for d in store.list_devices()}
    device_id, key = identity.new_identity(taken)
    try:
        rec = access.validate(access.DeviceRecord(
            device_id, key, site, label_text or site_name.strip(), paths,
            parsed.supervision_s, FIRMWARE_VERSION))
    except access.RegistryError as e:
        common.fail(common.REGISTRY, str(e).replace(f"device 0x{device_id:08X}: ", ""),
                    "fix the site details", as_json)

    cp = pick_circuitpy(drive, as_json)
    values = {k: v for k, v in raw.items() if v is not None}
    values["PB_FREQUENCY_MHZ"] = frequency or str(parsed.frequency_mhz)
    values["PB_SF_MAX"] = parsed.sf_max
    settings_path = cp.path / "settings.toml"
    try:
        old_settings: str | None = settings_path.read_text()
    except OSError:
        old_settings = None
    try:
        settings_path.write_text(settings_toml(values))
    except OSError as e:
        common.fail(common.FILES, f"cannot write {settings_path}: {e.strerror}",
                    "is CIRCUITPY read-only (boot.py remount)?", as_json)

    result: dict[str, Any] = {}
    try:
        used = port or auto_port()
        with SerialTransport(used) as t:  # code.py runs again on every way out
            t.enter_raw_repl()
            old = identity.board_identity(t)
            if old is not None and not force:
                _put_back(settings_path, old_settings)
                common.fail(common.CHECK_FAILED, f"the board already has device id "
                            f"0x{old[0]:08X}", "pass --force to give it a new identity (the "
                            "old id must then be removed on the gateway: panicgw devices "
                            "remove); for a new key with the same id use `panictool rekey`",
                            as_json, {"device_id": old[0]})
            before = identity.identity_bytes(t)
            identity.write_identity(t, device_id, key)
            check = identity.board_identity(t)
            if check != (device_id, identity.fingerprint(key)):
                common.fail(common.SERIAL, "the identity read back from the board differs",
                            "run provision again with --force", as_json)
            try:
                _register(store, in_export, export, rec, result)
            except Exception as e:  # RegistryError, StoreError, OSError, sqlite3 errors
                try:
                    identity.restore_identity(t, before)
                    _put_back(settings_path, old_settings)
                    undone = "the board was given back its old identity and settings"
                    hint = "fix the problem and run provision again"
                except (TransportError, OSError):
                    undone = "the board keeps the new key"
                    hint = "fix the problem and run provision again with --force"
                common.fail(common.REGISTRY, f"registering the device failed: {e}; {undone}",
                            hint, as_json, {"device_id": device_id})
    except TransportError as e:
        common.fail(common.SERIAL, f"writing the key failed: {e}", e.hint, as_json)

    result.update({
        "ok": True, "device_id": device_id, "device_id_hex": f"{device_id:08X}",
        "key_fingerprint": identity.fingerprint(key), "site": site.to_dict(),
        "label": rec.label, "paths": paths, "settings_toml": str(settings_path),
        "port": used, "replaced": f"{old[0]:08X}" if old else None,
    })
    try:
        if key_file is not None:
            access.write_key_file(key_file, device_id, key, site=site.name,
                                  key_gen=getattr(rec, "key_gen", 1))
            result["key_file"] = str(key_file)
        label_dir.mkdir(parents=True, exist_ok=True)
        svg, png = label.write_label(label_dir, rec)
        result["label_svg"], result["label_png"] = str(svg), str(png)
    except OSError as e:
        common.fail(common.FILES, f"the device is registered but writing a file failed: {e}",
                    as_json=as_json, extra={"device_id": device_id})
    verify_cmd = "panictool verify" + (f" --port {port}" if port else "")
    result["next"] = ([access.import_command(export)] if export is not None and
                      store is None else []) + [verify_cmd]
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"device 0x{device_id:08X} provisioned on {used} "
               f"(key fingerprint {result['key_fingerprint']})")
    typer.echo(f"  site: {site.name} ({kind}), {address} [{lat}, {lon}]")
    typer.echo(f"  paths: {', '.join(paths)}; settings: {settings_path}")
    if "gateway_db" in result:
        typer.echo(f"  registered in the gateway DB {result['gateway_db']}")
    if "export" in result:
        typer.echo(f"  added to {result['export']}")
    typer.echo(f"  label: {result['label_svg']} and {result['label_png']}")
    if show_qr:
        label.print_qr(rec)
    if len(result["next"]) > 1:
        typer.echo(f"next: on the gateway `{result['next'][0]}`, then here "
                   f"`{verify_cmd}` (the button sends a TEST; it passes on the gateway's "
                   "signed ACK)")
    else:
        typer.echo(f"next: {verify_cmd}  (the button sends a TEST; it passes on the "
                   "gateway's signed ACK)")


def _register(store: access.Store | None, in_export: list[access.DeviceRecord],
              export: Path | None, rec: access.DeviceRecord,
              result: dict[str, Any]) -> None:
    """Into the DB and/or the export file; both or neither (the board is then put back)."""
    in_db = False
    try:
        if store is not None:
            store.upsert_device(rec)
            in_db = True
            result["gateway_db"] = str(store.path)
        if export is not None:
            access.write_export(export, [r for r in in_export
                                         if r.device_id != rec.device_id] + [rec])
            result["export"] = str(export)
    except Exception:
        if in_db:
            store.remove_device(rec.device_id)  # type: ignore[union-attr]
        raise


def _put_back(path: Path, text: str | None) -> None:
    """settings.toml as it was before this run (absent stays absent)."""
    if text is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(text)


PROVISION = common.command_help(provision, EPILOG)
