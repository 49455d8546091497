"""Support bundle redaction, and `panicgw events` filters, on a real gateway DB."""

from __future__ import annotations

import json
import stat
import tarfile
import time
from pathlib import Path

from diagkit import DEV, KEY, MQTT_PASSWORD, SECRET, TOKEN, Gateway, free_port
from typer.testing import CliRunner

from panicgw.cli import app
from panicgw.registry import DeviceRecord, SiteRecord

KEY2 = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")
DEV2 = 0x00000B0B


def test_bundle_has_no_secret_anywhere(gw: Gateway, tmp_path: Path) -> None:
    gw.overrides["mqtt"] = {"enabled": True, "port": free_port(), "username": "gw",
                            "password": MQTT_PASSWORD}
    now = time.time()
    with gw.store.transaction():
        eid = gw.store.insert_event(DEV, 0x10001, "alarm", "pb-00c0ffee-00010001", now - 30, 0,
                                    0, 3700, b"\x11" * 19)
        gw.store.add_reception(eid, "lora", -99.0, 5.5, now - 30, False)
        oid = gw.store.enqueue("pb-00c0ffee-00010001", 0, {"event": "panic",
                                                            "note": f"token {TOKEN}"}, now - 30)
    gw.store.reschedule(oid, now + 5, f"http_401 Authorization: Bearer {TOKEN}")
    # A log that leaked secrets (a bug elsewhere must not leak further through the bundle).
    (gw.data / "gateway.log").write_text(
        f"debug token={TOKEN} secret={SECRET} key={KEY.hex()} KEY={KEY.hex().upper()} "
        f"mqtt={MQTT_PASSWORD}\nnormal line\n")
    out = tmp_path / "support" / "bundle.tar.gz"
    code, doc = gw.diag("--bundle", str(out))
    assert doc["bundle"] == str(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with tarfile.open(out) as tar:
        members = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()
                   if m.isfile()}
    assert {"diag.json", "config.json", "db-stats.json", "events.json",
            "logs/gateway.log"} <= set(members)
    needles = [TOKEN, SECRET, MQTT_PASSWORD, KEY.hex(), KEY.hex().upper()]
    for name, data in members.items():
        for n in needles:
            assert n.encode() not in data, (name, n)
        assert KEY not in data, name
    cfg = json.loads(members["config.json"])
    assert cfg["values"]["dispatch"]["token"] != TOKEN
    assert cfg["values"]["dispatch"]["url"].startswith("https://127.0.0.1")
    stats = json.loads(members["db-stats.json"])
    assert stats["rows"]["devices"] == 1 and stats["devices"][0]["device_id"] == DEV
    assert "key" not in stats["devices"][0]
    assert b"normal line" in members["logs/gateway.log"]
    events = json.loads(members["events.json"])
    assert events[0]["kind"] == "alarm" and events[0]["receptions"][0]["rssi"] == -99.0
    diag_doc = json.loads(members["diag.json"])
    assert diag_doc["exit_code"] == code


def test_bundle_with_invalid_config_still_redacts(gw: Gateway, tmp_path: Path) -> None:
    gw.write_config()
    text = gw.config.read_text().replace("[dispatch]", "[dispatch]\ntokn = \"x\"")
    gw.config.write_text(text)
    out = tmp_path / "b.tgz"
    res = CliRunner().invoke(app, ["diag", "-c", str(gw.config), "--json", "--bundle", str(out)])
    assert res.exit_code == 2
    assert TOKEN not in res.stdout
    with tarfile.open(out) as tar:
        blob = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
    assert TOKEN.encode() not in blob and SECRET.encode() not in blob
    assert b"tokn" in blob  # the raw config is there for the technician, secrets masked


def _seed_events(gw: Gateway) -> float:
    site2 = SiteRecord("Rumah Pak Budi", "home", "Jl. Dago 12, Bandung", -6.89, 107.61,
                       "Budi", "+62 811")
    gw.store.upsert_device(DeviceRecord(device_id=DEV2, key=KEY2, site=site2, label="pintu",
                                        paths=["wifi"], supervision_s=3600, firmware="0.1.0"))
    t0 = time.time() - 3 * 86400
    rows = [(DEV, 1, "heartbeat", t0), (DEV, 2, "alarm", t0 + 86400),
            (DEV2, 1, "test", t0 + 2 * 86400), (DEV2, 2, "alarm", time.time() - 60),
            (DEV, 3, "heartbeat", time.time() - 30)]
    with gw.store.transaction():
        for dev, ctr, kind, at in rows:
            inc = f"pb-{dev:08x}-{ctr:08x}" if kind != "heartbeat" else None
            eid = gw.store.insert_event(dev, ctr, kind, inc, at, 0, 0, 3600, b"\x00" * 19)
            gw.store.add_reception(eid, "wifi" if dev == DEV2 else "lora",
                                   None if dev == DEV2 else -105.0,
                                   None if dev == DEV2 else 4.25, at, False)
    return t0


def _events(gw: Gateway, *args: str) -> tuple[int, list[dict]]:
    gw.write_config()
    res = CliRunner().invoke(app, ["events", "-c", str(gw.config), "--json", *args])
    return res.exit_code, json.loads(res.stdout) if res.stdout.strip() else []


def test_events_filters(gw: Gateway) -> None:
    t0 = _seed_events(gw)
    code, rows = _events(gw)
    assert code == 0 and len(rows) == 5
    assert rows[0]["counter"] == 3 and rows[-1]["counter"] == 1  # newest first
    _, rows = _events(gw, "--device", "0x00000B0B")
    assert {r["device_id"] for r in rows} == {DEV2} and len(rows) == 2
    _, rows = _events(gw, "--device", str(DEV))
    assert len(rows) == 3
    _, rows = _events(gw, "--site", "dago")  # address, case-insensitive
    assert {r["site"] for r in rows} == {"Rumah Pak Budi"}
    _, rows = _events(gw, "--kind", "alarm")
    assert [r["device_id"] for r in rows] == [DEV2, DEV]
    _, rows = _events(gw, "--since", "1h")
    assert {r["counter"] for r in rows} == {2, 3} and len(rows) == 2
    _, rows = _events(gw, "--until", "2d")
    assert [r["kind"] for r in rows] == ["alarm", "heartbeat"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0 + 3600))
    _, rows = _events(gw, "--since", iso, "--until", "1d", "--kind", "test")
    assert len(rows) == 1 and rows[0]["site"] == "Rumah Pak Budi"
    _, rows = _events(gw, "--limit", "2")
    assert len(rows) == 2
    _, rows = _events(gw, "--kind", "alarm", "--device", "0x00C0FFEE")
    assert rows[0]["receptions"] == [{"path": "lora", "rssi": -105.0, "snr": 4.25,
                                      "at": rows[0]["received_at"], "duplicate": False}]
    code, rows = _events(gw, "--site", "nowhere")
    assert code == 1 and rows == []


def test_events_bad_input_and_table(gw: Gateway) -> None:
    _seed_events(gw)
    gw.write_config()
    for args, text in ((["--since", "yesterdayish"], "not a time"),
                       (["--device", "0xZZ"], "not a device id"),
                       (["--kind", "panik"], "use one of"),
                       (["--since", "1h", "--until", "2d"], "after --until")):
        res = CliRunner().invoke(app, ["events", "-c", str(gw.config), *args])
        assert res.exit_code == 2 and text in res.output, (args, res.output)
    res = CliRunner().invoke(app, ["events", "-c", str(gw.config), "--kind", "alarm"],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "Rumah Pak Budi" in res.output and "-105dBm" in res.output
    missing = gw.root / "other.toml"
    missing.write_text(f'[gateway]\ndata_dir = "{gw.root / "nothing"}"\n')
    res = CliRunner().invoke(app, ["events", "-c", str(missing)])
    assert res.exit_code == 3 and "no gateway DB" in res.output
