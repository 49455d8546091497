"""`panictool provision`: give a flashed button its identity and register it with its site.

Order matters: settings.toml goes through the drive first (CircuitPython reloads after a
file write), then the key goes into NVM over the raw REPL (entering the REPL stops
auto-reload, so nothing interrupts it), then the gateway learns the device, then the label
is made. The key is printed nowhere; ``--key-file`` writes it to a 0600 file on request.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import typer

from panicbutton import FIRMWARE_VERSION
from panicbutton.settings import KEYS, SettingsError
from panicbutton.settings import parse as parse_settings
from panicgw import registry
from panicgw.store import Store, StoreError
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
      --contact "Ibu Sari" --phone "+62 812 5555 0101" --gateway-db /var/lib/panicgw/panicgw.db

  panictool provision ... --export today.json      # then on the Pi: panicgw devices import
  panictool provision ... --wifi-ssid TokoMaju --wifi-password '...' \\
      --gateway-url http://192.168.1.10:8080       # Wi-Fi button (paths lora+wifi)

Exit codes: 0 provisioned and registered; 1 the board already has an identity (use
--force); 2 bad option; 3 no CIRCUITPY drive; 4 serial problem while writing the key;
5 cannot write settings.toml, the label or the key file; 6 gateway DB or export file unusable,
or bad site details.
"""


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


def _taken_ids(gateway_db: Path | None, export: Path | None) -> set[int]:
    taken: set[int] = set()
    if gateway_db is not None and gateway_db.exists():
        s = Store(gateway_db)
        try:
            taken |= {d.device_id for d in s.list_devices()}
        finally:
            s.close()
    if export is not None and export.exists():
        taken |= {d.device_id for d in registry.read_export(export)}
    return taken


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
    gateway_db: Path | None = typer.Option(None, "--gateway-db", help="Register straight into "
                                           "this gateway database (on the Pi)."),
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
    wifi_password: str = typer.Option("", "--wifi-password", help="Shop Wi-Fi password "
                                      "(stored in settings.toml, never printed)."),
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
    no_reboot: bool = typer.Option(False, "--no-reboot", help="Leave the board in the REPL "
                                   "instead of restarting code.py."),
    show_qr: bool = typer.Option(True, "--qr/--no-qr", help="Print the QR code in the "
                                 "terminal."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON result (never the key)."),
) -> None:
    """Give a flashed button a new device id and key, its settings, and register its site.

    Writes the non-secret settings.toml onto CIRCUITPY, the id and key into the board's NVM
    over the serial raw REPL (read back to check), registers device and site in the gateway
    DB (--gateway-db) and/or an export file (--export), and makes a label (SVG with text,
    PNG of the QR code, QR in the terminal). The QR holds the device id and site name only.
    """
    if gateway_db is None and export is None:
        common.fail(common.USAGE, "say where to register the device",
                    "pass --gateway-db PATH (on the gateway) or --export FILE "
                    "(then `panicgw devices import FILE` on the gateway)", as_json)
    paths = (["lora"] if lora else []) + (["wifi"] if wifi_ssid else [])
    raw: dict[str, Any] = {
        "PB_REGION": region, "PB_FREQUENCY_MHZ": frequency, "PB_SF": sf,
        "PB_SF_MAX": sf_max, "PB_TX_POWER": tx_power, "PB_LORA": int(lora),
        "PB_WIFI_SSID": wifi_ssid, "PB_WIFI_PASSWORD": wifi_password,
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
    site = registry.SiteRecord(site_name.strip(), kind, address, lat, lon, contact, phone)
    try:
        taken = _taken_ids(gateway_db, export)
    except registry.RegistryError as e:
        common.fail(common.REGISTRY, str(e), as_json=as_json)
    except (StoreError, sqlite3.Error, OSError) as e:
        common.fail(common.REGISTRY, f"cannot read {gateway_db}: {e}", as_json=as_json)
    device_id, key = identity.new_identity(taken)
    try:
        rec = registry.validate(registry.DeviceRecord(
            device_id, key, site, label_text or site_name.strip(), paths,
            parsed.supervision_s, FIRMWARE_VERSION))
    except registry.RegistryError as e:
        common.fail(common.REGISTRY, str(e).replace(f"device 0x{device_id:08X}: ", ""),
                    "fix the site details", as_json)

    cp = pick_circuitpy(drive, as_json)
    values = {k: v for k, v in raw.items() if v is not None}
    values["PB_FREQUENCY_MHZ"] = frequency or str(parsed.frequency_mhz)
    values["PB_SF_MAX"] = parsed.sf_max
    settings_path = cp.path / "settings.toml"
    try:
        settings_path.write_text(settings_toml(values))
    except OSError as e:
        common.fail(common.FILES, f"cannot write {settings_path}: {e.strerror}",
                    "is CIRCUITPY read-only (boot.py remount)?", as_json)

    try:
        used = port or auto_port()
        with SerialTransport(used) as t:
            t.enter_raw_repl()
            old = identity.board_identity(t)
            if old is not None and not force:
                common.fail(common.CHECK_FAILED, f"the board already has device id "
                            f"0x{old[0]:08X}", "pass --force to give it a new identity (the "
                            "old id must then be removed on the gateway: panicgw devices "
                            "remove)", as_json, {"device_id": old[0]})
            identity.write_identity(t, device_id, key)
            check = identity.board_identity(t)
            if check != (device_id, identity.fingerprint(key)):
                common.fail(common.SERIAL, "the identity read back from the board differs",
                            "run provision again with --force", as_json)
            if not no_reboot:
                t.soft_reboot(run_code=True)
    except TransportError as e:
        common.fail(common.SERIAL, f"writing the key failed: {e}", e.hint, as_json)

    result: dict[str, Any] = {
        "ok": True, "device_id": device_id, "device_id_hex": f"{device_id:08X}",
        "key_fingerprint": identity.fingerprint(key), "site": site.to_dict(),
        "label": rec.label, "paths": paths, "settings_toml": str(settings_path),
        "port": used, "replaced": f"{old[0]:08X}" if old else None,
    }
    try:
        if gateway_db is not None:
            registry.register(gateway_db, rec)
            result["gateway_db"] = str(gateway_db)
        if export is not None:
            existing = registry.read_export(export) if export.exists() else []
            registry.write_export(export, [r for r in existing if r.device_id != device_id]
                                  + [rec])
            result["export"] = str(export)
    except Exception as e:  # RegistryError, StoreError, OSError, sqlite3 errors
        common.fail(common.REGISTRY, f"the board has its key but registering it failed: {e}",
                    "fix the problem and run provision again with --force (it makes a new "
                    "key)", as_json, {"device_id": device_id})
    try:
        if key_file is not None:
            registry.write_key_file(key_file, device_id, key, site=site.name)
            result["key_file"] = str(key_file)
        label_dir.mkdir(parents=True, exist_ok=True)
        svg, png = label.write_label(label_dir, rec)
        result["label_svg"], result["label_png"] = str(svg), str(png)
    except OSError as e:
        common.fail(common.FILES, f"the device is registered but writing a file failed: {e}",
                    as_json=as_json, extra={"device_id": device_id})
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"device 0x{device_id:08X} provisioned on {used} "
               f"(key fingerprint {result['key_fingerprint']})")
    typer.echo(f"  site: {site.name} ({kind}), {address} [{lat}, {lon}]")
    typer.echo(f"  paths: {', '.join(paths)}; settings: {settings_path}")
    for where in ("gateway_db", "export"):
        if where in result:
            typer.echo(f"  registered in {result[where]}")
    typer.echo(f"  label: {result['label_svg']} and {result['label_png']}")
    if show_qr:
        label.print_qr(rec)
    typer.echo("next: panictool verify "
               + (f"--gateway-db {gateway_db}" if gateway_db else
                  f"--export {export}  (or --gateway-db on the Pi after the import)"))


PROVISION = common.command_help(provision, EPILOG)
