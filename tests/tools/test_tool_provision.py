"""`panictool provision` against a MicroPython board on a pty: NVM key, settings, registry."""

from __future__ import annotations

import json
import stat
import struct
import zlib
from pathlib import Path

import segno
from drivefakes import make_circuitpy
from typer.testing import CliRunner

from panicbutton import nvmstore
from panicbutton.settings import parse as parse_settings
from panicgw import registry
from panicgw.store import Store
from panictool import identity, label
from panictool.cli import app

runner = CliRunner()
SITE = ["--site-name", "Toko Maju", "--kind", "shop", "--address", "Jl. Merdeka 12, Bandung",
        "--lat", "-6.9147", "--lon", "107.6098", "--contact", "Ibu Sari",
        "--phone", "+62 812 5555 0101"]


def _mode(p) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _settings_from_toml(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def png_matrix(path) -> list[list[bool]]:
    """Decode segno's greyscale/1-bit PNG into dark/light modules (no imaging library)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype = ihdr[0], ihdr[1], ihdr[2], ihdr[3]
    assert ctype in (0, 3) and depth in (1, 8)
    raw = zlib.decompress(idat)
    stride = (w * depth + 7) // 8
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):  # only filters 0 (none) and 2 (up) occur for such images
            if f == 2:
                line[i] = (line[i] + prev[i]) & 0xFF
            assert f in (0, 2)
        prev = line
        if depth == 1:
            px = [(line[x // 8] >> (7 - x % 8)) & 1 for x in range(w)]
        else:
            px = [1 if line[x] > 127 else 0 for x in range(w)]
        rows.append(px)
    # With a palette, index 0 is dark in segno's 1-bit output; greyscale 0 is black.
    return [[v == 0 for v in r] for r in rows]


def gateway_config(tmp_path) -> tuple[Path, Path]:
    """A gateway config and the DB its daemon opens (<data_dir>/gateway.db), created as
    `panicgw run` creates it on first start."""
    data = tmp_path / "gw-data"
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'[gateway]\nid = "gw-test"\ndata_dir = "{data}"\n')
    db = data / "gateway.db"
    Store(db).close()
    return cfg, db


def test_provision_into_the_db_of_the_gateway_config(mpboard, tmp_path):
    cp = make_circuitpy(mpboard.fs)
    cfg, db = gateway_config(tmp_path)
    keyfile = tmp_path / "key.json"
    r = runner.invoke(app, ["provision", *SITE, "--config", str(cfg), "--drive", str(cp),
                            "--port", mpboard.port, "--label-dir", str(tmp_path / "labels"),
                            "--key-file", str(keyfile), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["gateway_db"] == str(db) and doc["next"] == ["panictool verify --port "
                                                             + mpboard.port]
    dev = doc["device_id"]
    # The key: in NVM (firmware's own reader), in the DB, in the 0600 key file; nowhere else.
    ident = nvmstore.read_identity(bytearray(mpboard.nvm()))
    assert ident is not None and ident[0] == dev
    key = ident[1]
    assert key.hex() not in r.output and doc["key_fingerprint"] == identity.fingerprint(key)
    s = Store(db)
    try:
        rec = s.get_device(dev)
    finally:
        s.close()
    assert rec is not None and rec.key == key
    assert rec.site.name == "Toko Maju" and rec.site.lat == -6.9147 and rec.paths == ["lora"]
    assert _mode(db) == 0o600
    assert _mode(keyfile) == 0o600 and json.loads(keyfile.read_text())["key"] == key.hex()
    # settings.toml is valid for the firmware and holds no key.
    text = (cp / "settings.toml").read_text()
    assert key.hex() not in text
    parsed = parse_settings(_settings_from_toml(text))
    assert parsed.region.name == "AS923-2" and parsed.sf == 9
    # The label: SVG names the device; the PNG is exactly the QR of the non-secret payload.
    svg = (tmp_path / "labels" / f"panic-button-{dev:08X}.svg").read_text()
    assert f"{dev:08X}" in svg and "Toko Maju" in svg and key.hex() not in svg
    payload = label.qr_payload(rec)
    assert json.loads(payload) == {"fmt": "pb1", "id": f"{dev:08X}", "site": "Toko Maju",
                                   "label": "Toko Maju"}
    png = png_matrix(tmp_path / "labels" / f"panic-button-{dev:08X}.png")
    want = [[bool(v) for v in row]
            for row in segno.make(payload, error="m", micro=False).matrix_iter(scale=8,
                                                                                 border=4)]
    assert png == want


def test_export_file_and_refusing_a_provisioned_board(mpboard, tmp_path):
    cp = make_circuitpy(mpboard.fs)
    export = tmp_path / "today.json"
    base = ["provision", *SITE, "--export", str(export), "--drive", str(cp), "--port",
            mpboard.port, "--label-dir", str(tmp_path), "--no-qr"]
    pw = tmp_path / "wifi.txt"
    pw.write_text("s3cret-pass\n")
    r = runner.invoke(app, [*base, "--wifi-ssid", "TokoMaju", "--wifi-password-file", str(pw),
                            "--gateway-url", "http://192.168.1.10:8080"])
    assert r.exit_code == 0, r.output
    assert "s3cret-pass" not in r.output
    assert 'PB_WIFI_PASSWORD = "s3cret-pass"' in (cp / "settings.toml").read_text()
    # the next step names the import on the gateway, then a verify that sends a TEST
    assert f"`sudo -u panicgw panicgw devices import - < {export}`" in r.output
    assert f"`panictool verify --port {mpboard.port}`" in r.output
    recs = registry.read_export(export)
    assert len(recs) == 1 and recs[0].paths == ["lora", "wifi"]
    assert _mode(export) == 0o600
    first = recs[0].device_id
    r = runner.invoke(app, base)
    assert r.exit_code == 1 and f"{first:08X}" in r.output and "--force" in r.output
    r = runner.invoke(app, [*base, "--force", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["replaced"] == f"{first:08X}"
    ids = [d.device_id for d in registry.read_export(export)]
    assert ids == [first, doc["device_id"]]  # appended to the day's export file
    assert nvmstore.read_identity(bytearray(mpboard.nvm()))[0] == doc["device_id"]


def test_bad_input_is_refused_before_touching_the_board(mpboard, tmp_path):
    cp = make_circuitpy(mpboard.fs)
    before = mpboard.nvm()
    common = ["--drive", str(cp), "--port", mpboard.port, "--export", str(tmp_path / "e.json")]
    bad_lat = [a if a != "-6.9147" else "-96.5" for a in SITE]
    # a password on the command line is refused (shell history, ps), before anything
    r = runner.invoke(app, ["provision", *SITE, *common, "--wifi-ssid", "Toko",
                            "--wifi-password", "s3cret-pass"])
    assert r.exit_code == 2 and "shell history" in r.output and "--wifi-password-file" \
        in r.output
    # no terminal to ask on, no file, no environment: refused, saying how
    r = runner.invoke(app, ["provision", *SITE, *common, "--wifi-ssid", "Toko"])
    assert r.exit_code == 2 and "PANICTOOL_WIFI_PASSWORD" in r.output
    r = runner.invoke(app, ["provision", *bad_lat, *common])
    assert r.exit_code == 6 and "site.lat" in r.output
    r = runner.invoke(app, ["provision", *SITE, *common, "--sf", "12"])
    assert r.exit_code == 2 and "PB_SF" in r.output and "dwell" in r.output
    r = runner.invoke(app, ["provision", *SITE, "--drive", str(cp), "--port", mpboard.port],
                      env={"PANICGW_CONFIG": str(tmp_path / "no-gateway-here.toml")})
    assert r.exit_code == 2 and "--export" in r.output and "--config" in r.output
    assert mpboard.nvm() == before and not (cp / "settings.toml").exists()


def test_a_mistyped_gateway_db_is_refused_and_never_created(mpboard, tmp_path):
    cp = make_circuitpy(mpboard.fs)
    cfg, db = gateway_config(tmp_path)
    before = mpboard.nvm()
    typo = db.with_name("gatway.db")
    r = runner.invoke(app, ["provision", *SITE, "--gateway-db", str(typo), "--drive", str(cp),
                            "--port", mpboard.port, "--json"])
    assert r.exit_code == 6, r.output
    doc = json.loads(r.output)
    assert f"no gateway DB at {typo}" in doc["error"] and "--config" in doc["error"]
    assert not typo.exists()
    # a file that is there but is no gateway DB (say, the export) is refused too
    other = tmp_path / "notes.db"
    other.write_bytes(b"")
    r = runner.invoke(app, ["provision", *SITE, "--gateway-db", str(other), "--drive",
                            str(cp), "--port", mpboard.port])
    assert r.exit_code == 6 and "not a gateway DB" in r.output
    # a config whose data_dir has no DB yet (the daemon never ran) is refused the same way
    cfg.write_text(f'[gateway]\ndata_dir = "{tmp_path / "fresh"}"\n')
    r = runner.invoke(app, ["provision", *SITE, "--config", str(cfg), "--drive", str(cp),
                            "--port", mpboard.port])
    assert r.exit_code == 6 and "panicgw run" in r.output
    assert not (tmp_path / "fresh" / "gateway.db").exists()
    assert mpboard.nvm() == before and not (cp / "settings.toml").exists()


def test_a_failed_registration_puts_the_board_back(mpboard, tmp_path):
    cp = make_circuitpy(mpboard.fs)
    (cp / "settings.toml").write_text('PB_REGION = "AS923-2"\n')
    before = mpboard.nvm()
    # the export goes to a directory that does not exist: registering fails after the key
    # is in NVM
    r = runner.invoke(app, ["provision", *SITE, "--export", str(tmp_path / "x" / "e.json"),
                            "--drive", str(cp), "--port", mpboard.port, "--json"])
    assert r.exit_code == 6, r.output
    doc = json.loads(r.output)
    assert "old identity and settings" in doc["error"]
    assert mpboard.nvm() == before  # no identity: nothing half-done
    assert (cp / "settings.toml").read_text() == 'PB_REGION = "AS923-2"\n'
