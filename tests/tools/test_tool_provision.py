"""`panictool provision` against a MicroPython board on a pty: NVM key, settings, registry."""

from __future__ import annotations

import json
import stat
import struct
import zlib

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


def test_provision_into_gateway_db(mpboard, tmp_path):
    cp = make_circuitpy(mpboard.fs)
    db = tmp_path / "gw" / "panicgw.db"
    Store(db).close()  # C3: only the gateway creates it
    keyfile = tmp_path / "key.json"
    r = runner.invoke(app, ["provision", *SITE, "--gateway-db", str(db), "--drive", str(cp),
                            "--port", mpboard.port, "--label-dir", str(tmp_path / "labels"),
                            "--key-file", str(keyfile), "--no-reboot", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
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
            mpboard.port, "--label-dir", str(tmp_path), "--no-reboot", "--no-qr"]
    r = runner.invoke(app, [*base, "--wifi-ssid", "TokoMaju", "--wifi-password", "s3cret-pass",
                            "--gateway-url", "http://192.168.1.10:8080"])
    assert r.exit_code == 0, r.output
    assert "s3cret-pass" not in r.output
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
    r = runner.invoke(app, ["provision", *bad_lat, *common])
    assert r.exit_code == 6 and "site.lat" in r.output
    r = runner.invoke(app, ["provision", *SITE, *common, "--sf", "12"])
    assert r.exit_code == 2 and "PB_SF" in r.output and "dwell" in r.output
    r = runner.invoke(app, ["provision", *SITE, "--drive", str(cp), "--port", mpboard.port])
    assert r.exit_code == 2 and "--gateway-db" in r.output
    assert mpboard.nvm() == before and not (cp / "settings.toml").exists()
