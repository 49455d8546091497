"""`panicgw diag` with the daemon stopped: each injected fault is named, with status, hint and
the exit code it implies (0 all pass, 1 warnings, 2 failures)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

from diagkit import DEV, by_id, free_port, rest_level

from panicgw import diag

# Checks that never pass on a stopped gateway or in this sandbox, whatever the fault.
STOPPED = {"daemon"}


def assert_clean_except(doc: dict, *allowed: str) -> None:
    bad = {r["id"]: (r["status"], r["finding"]) for r in doc["results"]
           if r["status"] in ("WARN", "FAIL") and r["id"] not in STOPPED | set(allowed)}
    assert not bad, bad


def test_healthy_stopped_gateway(gw):
    code, doc = gw.diag()
    r = by_id(doc)
    assert_clean_except(doc)
    assert r["daemon"]["status"] == "FAIL" and "not running" in r["daemon"]["finding"]
    assert "systemctl start panicgw" in r["daemon"]["hint"]
    assert r["bridge.ping"]["status"] == "PASS"
    assert r["bridge.radio"]["status"] == "PASS"
    assert r["bridge.noise"]["status"] == "PASS" and "-117.5" in r["bridge.noise"]["finding"]
    assert r["dispatch"]["status"] == "PASS"
    assert r["dispatch.auth"]["status"] == "PASS"
    assert r["dispatch.tls"]["status"] == "PASS"
    assert r["db.integrity"]["status"] == "PASS"
    assert r["devices.supervision"]["status"] == "PASS"
    # only the stopped daemon fails (a FAIL: no alarm is received), nothing else is wrong
    assert (code, rest_level(doc)) == (2, 0)
    assert gw.bridge.pings >= 1
    # diag sent a probe, not an event: dispatch holds no incident
    assert gw.dispatch.incidents == {}


def test_every_non_pass_has_a_hint(gw):
    gw.bridge.unplug()
    gw.overrides["dispatch"] = {"url": f"https://127.0.0.1:{free_port()}/v1/events"}
    code, doc = gw.diag("--set", "disk_free_warn_mb=1e12")
    for r in doc["results"]:
        if r["status"] in ("WARN", "FAIL"):
            assert r["hint"], r
    assert (code, rest_level(doc)) == (2, 2)


def test_bridge_unplugged(gw):
    gw.bridge.unplug()
    code, doc = gw.diag()
    r = by_id(doc)["bridge.present"]
    assert r["status"] == "FAIL"
    assert "not found" in r["finding"] and str(gw.bridge.link_path) in r["finding"]
    assert "USB cable" in r["hint"]
    assert (code, rest_level(doc)) == (2, 2)


def test_bridge_silent(gw):
    gw.bridge.answer = False
    code, doc = gw.diag("--set", "bridge_timeout_s=0.5")
    r = by_id(doc)["bridge.ping"]
    assert r["status"] == "FAIL" and "no PONG" in r["finding"]
    assert "flash --role bridge" in r["hint"]
    assert (code, rest_level(doc)) == (2, 2)


def test_wrong_radio_config(gw):
    """Daemon stopped: diag names the difference, and the fix is starting the gateway (it
    pushes [serial] to the bridge), not editing the bridge."""
    gw.bridge.status["radio"]["sf"] = 10
    gw.bridge.status["radio"]["frequency_mhz"] = 923.2
    code, doc = gw.diag()
    r = by_id(doc)["bridge.radio"]
    assert r["status"] == "FAIL"
    assert "SF 10 (config 9)" in r["finding"] and "923.2" in r["finding"]
    assert "systemctl start panicgw" in r["hint"] and "settings.toml" not in r["hint"]
    assert (code, rest_level(doc)) == (2, 2)


def test_noisy_channel_warns(gw):
    gw.bridge.status["noise_floor_dbm"] = -82
    code, doc = gw.diag()
    r = by_id(doc)["bridge.noise"]
    assert r["status"] == "WARN" and "-82" in r["finding"] and "antenna" in r["hint"]
    assert (code, rest_level(doc)) == (2, 1)


def test_port_held_by_another_process_is_not_opened(gw):
    # A separate process holds the port, like a running daemon without a status API.
    proc = subprocess.Popen([sys.executable, "-c", "import sys,time; f=open(sys.argv[1],'rb',"
                             "buffering=0); print('ok', flush=True); time.sleep(30)",
                             str(gw.bridge.link_path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ok"
        before = gw.bridge.pings
        code, doc = gw.diag()
        r = by_id(doc)["bridge.ping"]
        assert r["status"] == "WARN" and f"pid {proc.pid}" in r["finding"]
        assert gw.bridge.pings == before  # we did not talk on someone else's port
    finally:
        proc.kill()
        proc.wait()


def test_dispatch_down(gw):
    gw.loop.run(gw.dispatch.stop())
    code, doc = gw.diag()
    r = by_id(doc)
    assert r["dispatch"]["status"] == "FAIL"
    assert "connection refused" in r["dispatch"]["finding"]
    assert "firewall" in r["dispatch"]["hint"]
    assert r["dispatch.auth"]["status"] == "SKIP"
    assert (code, rest_level(doc)) == (2, 2)


def test_dispatch_answers_401(gw):
    gw.start_dispatch(token="a-different-token-999")
    code, doc = gw.diag()
    r = by_id(doc)
    assert r["dispatch"]["status"] == "PASS"
    assert r["dispatch.auth"]["status"] == "FAIL"
    assert "HTTP 401" in r["dispatch.auth"]["finding"]
    assert "[dispatch] token" in r["dispatch.auth"]["hint"]
    assert (code, rest_level(doc)) == (2, 2)


def test_dispatch_bad_signature_secret(gw):
    gw.overrides["dispatch"] = {"secret": "not-the-shared-secret"}
    code, doc = gw.diag()
    assert by_id(doc)["dispatch.auth"]["status"] == "FAIL"
    assert (code, rest_level(doc)) == (2, 2)


def test_dispatch_certificate_expiring_and_untrusted(gw, certs):
    gw.start_dispatch(cert_days=5)
    code, doc = gw.diag()
    r = by_id(doc)["dispatch.tls"]
    assert r["status"] == "WARN" and "expires on" in r["finding"] and "renew" in r["hint"]
    assert r["data"]["days_left"] < 6
    assert (code, rest_level(doc)) == (2, 1)
    gw.ca_file = certs[90][0]  # a CA that did not sign the server's certificate
    code, doc = gw.diag()
    r = by_id(doc)
    assert r["dispatch.tls"]["status"] == "FAIL" and "not trusted" in r["dispatch.tls"]["finding"]
    assert r["dispatch"]["status"] == "FAIL"
    assert (code, rest_level(doc)) == (2, 2)


def test_broker_down_and_up(gw, mosquitto):
    gw.overrides["mqtt"] = {"enabled": True, "port": free_port()}
    code, doc = gw.diag()
    r = by_id(doc)["mqtt"]
    assert r["status"] == "WARN" and "unreachable" in r["finding"]
    assert "mosquitto" in r["hint"]
    assert (code, rest_level(doc)) == (2, 1)
    gw.overrides["mqtt"] = {"enabled": True, "port": mosquitto}
    code, doc = gw.diag()
    assert by_id(doc)["mqtt"]["status"] == "PASS"
    assert (code, rest_level(doc)) == (2, 0)


def test_db_unwritable(gw):
    db = gw.data / "gateway.db"
    db.chmod(0o400)
    try:
        code, doc = gw.diag()
    finally:
        db.chmod(0o600)
    r = by_id(doc)["db.permissions"]
    assert r["status"] == "FAIL" and "not writable" in r["finding"]
    assert "chmod u+w" in r["hint"]
    assert (code, rest_level(doc)) == (2, 2)


def test_db_world_readable(gw):
    db = gw.data / "gateway.db"
    db.chmod(0o644)
    code, doc = gw.diag()
    r = by_id(doc)["db.permissions"]
    assert r["status"] == "FAIL" and "0644" in r["finding"] and "chmod 600" in r["hint"]


def test_db_corrupt(gw):
    gw.store.close()
    db = gw.data / "gateway.db"
    for suffix in ("-wal", "-shm"):
        (gw.data / f"gateway.db{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(db) as c:
        page = c.execute("PRAGMA page_size").fetchone()[0]
        root = c.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    c.close()
    raw = bytearray(db.read_bytes())
    at = (root - 1) * page
    raw[at:at + 8] = b"\x07" * 8  # not a valid b-tree page type
    db.write_bytes(bytes(raw))
    code, doc = gw.diag()
    r = by_id(doc)["db.integrity"]
    assert r["status"] == "FAIL" and "restore" in r["hint"]
    assert (code, rest_level(doc)) == (2, 2)


def test_disk_nearly_full(gw):
    code, doc = gw.diag("--set", "disk_free_warn_mb=1e12")
    r = by_id(doc)["disk"]
    assert r["status"] == "WARN" and "MB free" in r["finding"] and "journalctl" in r["hint"]
    assert (code, rest_level(doc)) == (2, 1)
    code, doc = gw.diag("--set", "disk_free_fail_mb=1e12")
    assert by_id(doc)["disk"]["status"] == "FAIL"
    assert (code, rest_level(doc)) == (2, 2)


def test_device_silent_past_supervision(gw):
    with gw.store.transaction():
        gw.store.heard(DEV, time.time() - 3 * 3600, "lora", -110.0, -3.0, 3600, False)
    code, doc = gw.diag()
    r = by_id(doc)["devices.supervision"]
    assert r["status"] == "FAIL"
    assert "0x00C0FFEE" in r["finding"] and "Toko Sinar" in r["finding"]
    assert "silent 3.0 h" in r["finding"] or "silent 180 min" in r["finding"]
    assert "panictool verify" in r["hint"]
    assert (code, rest_level(doc)) == (2, 2)


def test_low_battery(gw):
    with gw.store.transaction():
        gw.store.heard(DEV, time.time() - 10, "wifi", None, None, 2300, True)
    code, doc = gw.diag()
    r = by_id(doc)["devices.battery"]
    assert r["status"] == "WARN" and "2300 mV" in r["finding"]
    assert (code, rest_level(doc)) == (2, 1)


def test_outbox_alarm_stuck_and_dead_letters(gw):
    now = time.time()
    with gw.store.transaction():
        gw.store.enqueue("pb-00c0ffee-00010001", 0, {"event": "panic"}, now - 600)
        gw.store.enqueue("pb-00c0ffee-00010002", 3, {"event": "checkin"}, now - 30)
    item = gw.store.due(now, 10)[0]
    gw.store.reschedule(item.id, now + 30, f"http_503: Bearer {TOKEN_HINT} refused")
    code, doc = gw.diag()
    r = by_id(doc)["outbox"]
    assert r["status"] == "FAIL" and "1 alarm(s) not delivered" in r["finding"]
    assert "phone the dispatch" in r["hint"]
    assert TOKEN_HINT not in r["finding"] and "REDACTED" in r["finding"]
    gw.store.dead_letter(item.id, now, "HTTP 422 schema")
    code, doc = gw.diag()
    r = by_id(doc)
    assert r["dead_letters"]["status"] == "FAIL" and "1 alarm(s)" in r["dead_letters"]["finding"]
    assert r["outbox"]["status"] == "PASS"


def test_bad_tag_storm(gw):
    with gw.store.transaction():
        gw.store.add_rejections({"bad_tag": 40, "bad_crc": 3}, time.time() - 5)
    code, doc = gw.diag()
    r = by_id(doc)["rejections"]
    assert r["status"] == "WARN" and "bad_tag: 40" in r["finding"] and "rekey" in r["hint"]
    with gw.store.transaction():
        gw.store.add_rejections({"replay": 600}, time.time())
    code, doc = gw.diag()
    assert by_id(doc)["rejections"]["status"] == "FAIL"
    assert (code, rest_level(doc)) == (2, 2)


def test_invalid_config_names_the_key(gw):
    gw.write_config()
    gw.config.write_text(gw.config.read_text().replace("[serial]", "[serial]\nspreading_factr = 9"))
    from typer.testing import CliRunner

    from panicgw.cli import app

    res = CliRunner().invoke(app, ["diag", "-c", str(gw.config), "--json"])
    import json

    doc = json.loads(res.stdout)
    r = by_id(doc)["config"]
    assert r["status"] == "FAIL" and "spreading_factr" in r["finding"]
    assert "spreading_factor" in r["finding"]  # did-you-mean
    assert res.exit_code == 2
    assert all(x["status"] == "SKIP" for x in doc["results"]
               if x["id"] not in ("config", "clock"))


def test_clock_before_build_fails():
    ctx = diag.Context(None, now=diag.BUILD_FLOOR - 10 * 86400)
    r = diag.check_clock(ctx)
    assert r.status == diag.FAIL and "before this software was built" in r.finding
    assert "timedatectl" in r.hint


def test_clock_behind_db(gw):
    with gw.store.transaction():
        gw.store.heard(DEV, time.time() + 7200, "lora", -101.0, 7.5, 3700, False)
    code, doc = gw.diag()
    r = by_id(doc)["clock"]
    assert r["status"] == "FAIL" and "behind the newest record" in r["finding"]


def test_bad_arguments(gw):
    from typer.testing import CliRunner

    from panicgw.cli import app

    gw.write_config()
    res = CliRunner().invoke(app, ["diag", "-c", str(gw.config), "--set", "nope=1"])
    assert res.exit_code == 3 and "disk_free_warn_mb" in res.output
    res = CliRunner().invoke(app, ["diag", "-c", str(gw.config), "--only", "bogus"])
    assert res.exit_code == 3


TOKEN_HINT = "tok-Very-Secret-4711"


def test_docs_cover_every_check_and_threshold(gw):
    from dataclasses import fields
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "diagnostics.md").read_text()
    gw.overrides["mqtt"] = {"enabled": True, "port": free_port()}
    gw.overrides["dispatch"] = {"secret": ""}
    _, doc = gw.diag()
    ids = {r["id"] for r in doc["results"]}
    gw.write_config()
    gw.config.chmod(0o644)
    ids |= {r.id for r in diag.run_checks(diag.load_context(gw.config))}
    assert {"config.permissions", "dispatch.signing", "mqtt", "bridge.noise"} <= ids
    for cid in ids:
        assert f"`{cid}`" in text, cid
    for f in fields(diag.Thresholds):
        assert f"`{f.name}`" in text, f.name


def test_relative_serial_port_resolves_against_the_config_file(gw, monkeypatch, tmp_path_factory):
    """Issue 11.9: docs/gateway.md says relative paths are relative to the config file; a
    relative `[serial] port` used to resolve against the working directory."""
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    gw.overrides["serial"] = {"port": gw.bridge.link_path.name}  # "ttyBRIDGE", beside it
    code, doc = gw.diag()
    r = by_id(doc)
    assert r["bridge.present"]["status"] == "PASS", r["bridge.present"]
    assert r["bridge.ping"]["status"] == "PASS"
    assert str(gw.bridge.link_path) in r["bridge.present"]["finding"]


def test_a_never_heard_device_is_never_called_heard(gw):
    """Issue 11.9: diag said "all 1 device(s) heard" for a device it had never heard."""
    from panicgw.registry import DeviceRecord, SiteRecord

    site = SiteRecord("Rumah Baru", "home", "Gg. Mawar 3", -6.9, 107.6)
    gw.store.upsert_device(DeviceRecord(0x0BADF00D, bytes(range(16)), site, "pintu",
                                        supervision_s=600))  # registered just now
    code, doc = gw.diag()
    r = by_id(doc)["devices.supervision"]
    assert r["status"] == "WARN" and "heard" not in r["finding"].split("never heard")[0]
    assert "1 of 2 device(s) registered but never heard yet" in r["finding"]
    assert "0x0BADF00D" in r["finding"] and "1 heard in time" in r["finding"]
    assert "panictool verify" in r["hint"]
    assert (code, rest_level(doc)) == (2, 1)
    # registered long ago and still never heard: supervision lost, a FAIL
    gw.store.db.execute("UPDATE devices SET enrolled_at = enrolled_at - 86400 "
                        "WHERE device_id = ?", (0x0BADF00D,))
    code, doc = gw.diag()
    r = by_id(doc)["devices.supervision"]
    assert r["status"] == "FAIL" and "0x0BADF00D" in r["finding"]
    assert r["data"]["never_heard"] and not r["data"]["lost"]
