"""The operator's journey in a real browser, fed by a real gateway: `panicgw run` forwards
over HTTPS (trusting the console's self-signed certificate with [dispatch] ca_file) what a
signed frame POSTed to its /v1/frames starts. Two operators (two windows of one headless
Chromium: one on 127.0.0.1, one on localhost, so each has its own session cookie) see the
alarm; one takes it, the other sees the owner and cannot act without taking it over; the
plan is ticked, a note written, the alarm closed with a disposition; the audit shows each
step; the same Idempotency-Key posted again changes nothing on either screen."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from consolekit import (
    BIN,
    ConsoleProc,
    click,
    free_port,
    js,
    lines,
    login,
    post,
    read_live,
    run_cli,
    shot,
    start_browser,
    wait_for,
)
from selenium.webdriver.common.by import By

from panicgw.forward.payload import make_incident_id
from panicgw.registry import DeviceRecord, SiteRecord, write_export
from panicproto import frames

KEY = bytes.fromhex("6b6579206f662074686520736b697474")
DEV = 0x5EC0B17E
SITE = SiteRecord("Toko Emas Mulia", "shop", "Jl. Malioboro 52, Yogyakarta", -7.7925,
                  110.3658, "Pak Budi", "+62 811 2345 678")


def frame(counter: int, kind: int = frames.ALARM) -> bytes:
    return frames.encode_uplink(KEY, frames.Uplink(kind, DEV, counter, attempt=0,
                                                   battery_mv=3650, wifi=True))


class World:
    def __init__(self, tmp: Path) -> None:
        self.console = ConsoleProc(tmp / "console", tls=True).start()
        export = tmp / "registry.json"
        write_export(export, [DeviceRecord(device_id=DEV, key=KEY, site=SITE, label="kasir",
                                           paths=["lora", "wifi"], supervision_s=3600,
                                           firmware="0.3.0")])
        run_cli("sites", "import", str(export), config=self.console.config)
        self.http_port = free_port()
        data = tmp / "gw"
        cfg = tmp / "gateway.toml"
        cfg.write_text(
            f'[gateway]\nid = "gw-yogya-1"\ndata_dir = "{data}"\nlog_format = "text"\n'
            '[serial]\nenabled = false\n'
            f'[http]\nhost = "127.0.0.1"\nport = {self.http_port}\n'
            '[status]\nhost = "127.0.0.1"\nport = 0\n'
            f'[dispatch]\nurl = "{self.console.events_url}"\n'
            f'token = "{self.token}"\nsecret = "{self.secret}"\n'
            f'ca_file = "{self.console.cert}"\n')
        self.gw_log = tmp / "gateway.log"
        with self.gw_log.open("wb") as log:
            self.gw = subprocess.Popen([str(BIN / "panicgw"), "run", "--config", str(cfg)],
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.status_port = wait_for(lambda: json.loads(
            (data / "runtime.json").read_text()).get("status_port"), 20, "gateway runtime.json")
        # As on a real gateway: the daemon created its DB; the registry goes into that one.
        r = subprocess.run([str(BIN / "panicgw"), "devices", "import", "--config", str(cfg),
                            str(export)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: self.press_raw(b"x" * 19) == 400 or None, 20, "gateway HTTP ingest")
        self.driver = start_browser()

    token = "console-test-token-0123456789"
    secret = "console-test-secret-abcdefghijklmnopqrstuvwxyz"

    def press_raw(self, data: bytes) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/v1/frames",
                                     data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                r.read()
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def status(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/v1/status",
                                    timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.driver.quit()
        if self.gw.poll() is None:
            os.killpg(self.gw.pid, signal.SIGTERM)
            self.gw.wait(15)
        self.console.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("gw-browser"))
    yield w
    w.stop()


def _line(driver, incident: str) -> dict | None:
    return next((x for x in lines(driver) if x["incident"] == incident), None)




def _audit(driver) -> list[str]:
    return js(driver, "return [...document.querySelectorAll('#audit li')]"
                      ".map(e => e.dataset.action)")


def test_real_gateway_alarm_worked_by_two_operators(world):
    d, c = world.driver, world.console
    login(d, c.base, "ani")
    ani = d.current_window_handle
    d.switch_to.new_window("window")
    login(d, c.base.replace("127.0.0.1", "localhost"), "budi")
    budi = d.current_window_handle

    # a shopkeeper holds the button: the gateway stores, ACKs and forwards over HTTPS
    assert world.press_raw(frame(0x00010001)) == 200
    incident = make_incident_id(DEV, 0x00010001, "panic")
    for w in (budi, ani):
        d.switch_to.window(w)
        line = wait_for(lambda: _line(d, incident), 15, "the panic on both screens")
        assert "Toko Emas Mulia" in line["text"] and "PANIC" in line["text"]
        assert "Not taken" in line["text"]
    # a second press of the same incident updates the same line (press count)
    assert world.press_raw(frame(0x00010002)) == 200
    wait_for(lambda: "×2" in (_line(d, incident) or {}).get("text", ""), 15, "press count 2")
    assert len([x for x in lines(d) if x["incident"] == incident]) == 1
    shot(d, "queue")

    # ani takes it
    click(d, f"#queue .line[data-incident='{incident}']")
    click(d, "#take")
    wait_for(lambda: "Taken by you" in d.find_element(By.ID, "owner-box").text, 10, "owned")
    # budi sees the owner, on the line and in the detail, and cannot act
    d.switch_to.window(budi)
    wait_for(lambda: "Taken by Ani" in _line(d, incident)["text"], 10, "owner on budi's line")
    click(d, f"#queue .line[data-incident='{incident}']")
    wait_for(lambda: "Taken by Ani" in d.find_element(By.ID, "owner-box").text, 10,
             "owner in budi's detail")
    assert not d.find_elements(By.ID, "take")
    assert read_live(lambda: d.find_element(By.ID, "take-over").is_displayed())
    assert read_live(lambda: all(not e.is_enabled()
                                 for e in d.find_elements(By.CSS_SELECTOR, ".step-check")))
    assert not read_live(lambda: d.find_element(By.ID, "close").is_enabled())
    aid = int(d.find_element(By.ID, "detail").get_attribute("data-alarm"))
    forced = d.execute_async_script(
        "const done = arguments[1]; PC.api('POST', `/api/alarms/${arguments[0]}/step`, "
        "{index: 0, done: true}).then(r => done([r.status, r.data]))", aid)
    assert forced == [409, {"error": "err_owned_by", "owner": "ani"}]

    # ani works the plan; budi's screen follows live
    d.switch_to.window(ani)
    site_card = read_live(lambda: d.find_element(By.ID, "site-card").text)
    for want in ("Jl. Malioboro 52", "+62 811 2345 678", "kasir (5EC0B17E)", "WIFI",
                 "-7.7925, 110.3658", "Presses"):
        assert want in site_card, want
    checks = d.find_elements(By.CSS_SELECTOR, ".step-check")
    assert len(checks) == 5 and "police unit" in read_live(
        lambda: d.find_element(By.ID, "steps").text)
    for i in (0, 1):
        click(d, ".step-check", i)
        wait_for(lambda i=i: "done" in d.find_elements(By.CSS_SELECTOR, "#steps li")[i]
                 .get_attribute("class"), 10, f"step {i + 1} ticked")
    d.find_element(By.ID, "note-text").send_keys("Unit 7 dispatched by radio, ETA 4 min")
    click(d, "#add-note")
    wait_for(lambda: _audit(d) == ["take", "step", "step", "note"], 10, "audit so far")
    js(d, "document.getElementById('detail-panel').scrollTop = 0")
    shot(d, "alarm")
    d.switch_to.window(budi)
    wait_for(lambda: len(d.find_elements(By.CSS_SELECTOR, "#steps li.done")) == 2, 10,
             "ticks on budi's screen")

    # closed with a disposition and a note: gone from both queues, the audit has each step
    d.switch_to.window(ani)
    click(d, "#disposition option[value='real']")
    d.find_element(By.ID, "close-note").send_keys("Two suspects arrested by unit 7")
    click(d, "#close")
    wait_for(lambda: _line(d, incident) is None, 10, "line gone on ani's screen")
    wait_for(lambda: _audit(d) == ["take", "step", "step", "note", "close"], 10, "close audited")
    assert "Closed by ani: Real alarm" in read_live(
        lambda: d.find_element(By.ID, "owner-box").text)
    shot(d, "closed")
    d.switch_to.window(budi)
    wait_for(lambda: _line(d, incident) is None, 10, "line gone on budi's screen")
    csv_rows = c.query("SELECT username, action, detail FROM audit WHERE alarm_id = ? "
                       "ORDER BY seq", (aid,))
    assert [r[:2] for r in csv_rows] == [("ani", "take"), ("ani", "step"), ("ani", "step"),
                                         ("ani", "note"), ("ani", "close")]
    assert "Two suspects arrested" in csv_rows[-1][2]
    # the gateway holds nothing back: both messages delivered
    wait_for(lambda: (world.status().get("outbox") or {}).get("pending") == 0, 10, "outbox")


def test_same_idempotency_key_again_changes_nothing_on_screen(world):
    d, c = world.driver, world.console
    raw = c.query("SELECT body FROM messages WHERE event = 'panic' ORDER BY id LIMIT 1")[0][0]
    doc = json.loads(raw)
    before = (lines(d), js(d, "return document.querySelectorAll('#log li').length"),
              c.query("SELECT COUNT(*), MAX(seq) FROM changes"))
    st, ans = post(c.events_url, doc, token=world.token, secret=world.secret,
                   cafile=str(c.cert))
    assert (st, ans["status"]) == (200, "duplicate")
    # a marker sent after it: once the screen shows the marker, the duplicate had its chance
    marker = {**doc, "event": "gateway_checkin", "category": "info", "test": False,
              "site": None, "device": None, "paths": [], "incident_id": "marker-checkin",
              "idempotency_key": "f" * 32,
              "contact_id": {"code": 602, "qualifier": 1, "display": "1602",
                             "text": "Periodic test report"}}
    assert post(c.events_url, marker, token=world.token, secret=world.secret,
                cafile=str(c.cert))[0] == 200
    wait_for(lambda: js(d, "return document.querySelectorAll('#log li').length")
             == before[1] + 1, 10, "the marker in the event log")
    assert lines(d) == before[0]
    assert js(d, "return document.querySelector('#log li').dataset.event") == "gateway_checkin"
    assert c.query("SELECT COUNT(*) FROM changes")[0][0] == before[2][0][0] + 2  # log+gateway


def test_take_over_is_explicit_and_recorded(world):
    from consolekit import Session
    d, c = world.driver, world.console
    assert world.press_raw(frame(0x00010005)) == 200  # the same incident, after the close
    incident = make_incident_id(DEV, 0x00010001, "panic")
    d.switch_to.window(d.window_handles[1])  # budi
    wait_for(lambda: _line(d, incident), 15, "a new line for the press after the close")
    click(d, f"#queue .line[data-incident='{incident}']")
    click(d, "#take")
    d.switch_to.window(d.window_handles[0])  # ani
    wait_for(lambda: "Taken by Budi" in (_line(d, incident) or {}).get("text", ""), 10,
             "budi's ownership on ani's screen")
    click(d, f"#queue .line[data-incident='{incident}']")
    click(d, "#take-over")
    d.find_element(By.ID, "takeover-reason").send_keys("Budi on the phone with the chief")
    click(d, "#takeover-confirm")
    wait_for(lambda: "Taken by you" in d.find_element(By.ID, "owner-box").text, 10,
             "ani owns it now")
    wait_for(lambda: _audit(d) == ["take", "take_over"], 10, "take over audited")
    text = read_live(lambda: d.find_element(By.ID, "audit").text)
    assert "from budi: Budi on the phone with the chief" in text
    # the site card's history counts the first alarm, closed as real
    assert "2 alarms, 0 false, 1 real" in read_live(
        lambda: d.find_element(By.ID, "history").text)
    d.switch_to.window(d.window_handles[1])
    wait_for(lambda: "Taken by Ani" in _line(d, incident)["text"], 10, "budi sees ani")
    # a supervisor downloads the audit trail as CSV with every action of the day
    st, text = Session(c, "sari", host="localhost").raw("GET", "/api/audit.csv")
    assert st == 200
    for action in (",take,", ",step,", ",note,", ",close,", ",take_over,", ",login,"):
        assert action in text, action
