"""Attention in a real browser whose autoplay policy blocks sound until the page is clicked
(Chromium's --autoplay-policy=document-user-activation-required): the console detects the
blocked audio and says so loudly; the 'start shift' click unlocks it and the alarm is heard
(measured on the page's own audio graph); a different sound per priority; it keeps
sounding with the tab in the background; an alarm not taken in time escalates (louder, and
onto the supervisor's screen), and so does one taken but not closed in time."""

from __future__ import annotations

import pytest
from consolekit import (
    ConsoleProc,
    body,
    click,
    js,
    lines,
    login,
    shot,
    start_browser,
    wait_for,
)
from selenium.webdriver.common.by import By

AUTOPLAY_BLOCKED = "--autoplay-policy=document-user-activation-required"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    console = ConsoleProc(tmp_path_factory.mktemp("sound"), heartbeat_s=0.5, extra=(
        "[escalation]\ntake_within_s = 2\nclose_within_min = 0.03\n"
        "[queue]\nwarn_after_s = 1\ndanger_after_s = 2\n")).start()
    driver = start_browser(AUTOPLAY_BLOCKED)
    yield console, driver
    driver.quit()
    console.stop()


def sound(d) -> dict:
    return js(d, """return {state: Sound.ctx.state, blocked: Sound.blocked(),
        current: Sound.current, loud: Sound.loud, log: Sound.log,
        banner: !document.getElementById('sound-blocked').classList.contains('hidden'),
        bannerText: document.getElementById('sound-blocked').textContent,
        hidden: document.hidden}""")


def peak(d, ms: int = 700) -> float:
    return d.execute_async_script(
        "const done = arguments[arguments.length - 1]; Sound.peak(arguments[0]).then(done)", ms)


def line_of(d, incident: str) -> dict | None:
    return next((x for x in lines(d) if x["incident"] == incident), None)


def take(d, incident: str) -> None:
    click(d, f"#queue .line[data-incident='{incident}']")
    click(d, "#take")
    wait_for(lambda: "Taken by you" in line_of(d, incident)["text"], 10, "taken")


def test_blocked_audio_detected_unlocked_and_heard(world):
    console, d = world
    login(d, console.base, "ani", start_shift=False)
    d.get(console.base + "/")  # a fresh page nobody has clicked: the browser keeps it silent
    wait_for(lambda: js(d, "return document.body.dataset.ready") == "1", 10, "page")
    s = sound(d)
    assert s["blocked"] and s["state"] == "suspended" and s["banner"], s
    assert "SOUND IS BLOCKED" in s["bannerText"]
    assert d.find_element(By.ID, "sound-status").text == "SOUND OFF"
    assert d.find_element(By.ID, "shift-overlay").is_displayed()
    shot(d, "start-shift")
    # an alarm while blocked: the page says it loudly, and nothing comes out
    panic = body("panic", device=0x0A000001, counter=1)
    assert console.post(panic)[0] == 200
    wait_for(lambda: "ALARM WITHOUT SOUND" in sound(d)["bannerText"], 10, "loud warning")
    assert sound(d)["current"] == "panic" and peak(d, 300) == 0.0
    d.find_element(By.ID, "start-shift").click()  # the operator's one click
    wait_for(lambda: not sound(d)["blocked"], 5, "sound unlocked")
    s = sound(d)
    assert not s["banner"] and d.find_element(By.ID, "sound-status").text == "Sound on"
    assert peak(d) > 0.05  # the siren is really being played
    # taking the alarm silences it
    take(d, panic["incident_id"])
    wait_for(lambda: sound(d)["current"] is None, 5, "silence after take")
    wait_for(lambda: peak(d, 200) == 0.0, 5, "nothing playing")


def test_other_priorities_other_sounds_also_in_a_background_tab(world):
    console, d = world
    tab = d.execute_cdp_cmd("Target.createTarget", {"url": "about:blank"})["targetId"]
    try:
        wait_for(lambda: sound(d)["hidden"], 5, "the console tab in the background")
        tamper = body("tamper", device=0x0A000002, counter=3, site=1)
        assert console.post(tamper)[0] == 200
        wait_for(lambda: sound(d)["current"] == "tamper", 10, "tamper sound in background")
        assert peak(d) > 0.05
        last = sound(d)["log"][-1]
        assert last["kind"] == "tamper" and last["hidden"] is True and last["state"] == "running"
        wait_for(lambda: "ALARM" in d.title, 5, "the tab title flashes")
    finally:
        d.execute_cdp_cmd("Target.closeTarget", {"targetId": tab})
    wait_for(lambda: not sound(d)["hidden"], 5, "back in front")
    lost = body("supervision_lost", device=0x0A000003, counter=4, site=2)
    assert console.post(lost)[0] == 200
    wait_for(lambda: line_of(d, lost["incident_id"]), 10, "trouble line")
    assert sound(d)["current"] == "tamper"  # the most urgent unowned line decides
    take(d, tamper["incident_id"])
    wait_for(lambda: sound(d)["current"] == "trouble", 10, "trouble sound")
    assert peak(d, 3200) > 0.02  # one short tone every 3 s
    kinds = [x["kind"] for x in sound(d)["log"]]
    assert {"panic", "tamper", "trouble"} <= set(kinds)
    freqs = js(d, "return Object.fromEntries(Object.entries(Sound.patterns)"
                  ".map(([k, v]) => [k, v[1].map(t => t[2])]))")
    assert len({tuple(v) for v in freqs.values()}) == len(freqs)  # each its own sound
    take(d, lost["incident_id"])
    wait_for(lambda: sound(d)["current"] is None, 5, "all taken: silence")


def test_escalation_louder_and_on_the_supervisors_screen(world):
    console, d = world
    ani = d.current_window_handle
    d.switch_to.new_window("window")
    login(d, console.base.replace("127.0.0.1", "localhost"), "sari")  # supervisor
    sari = d.current_window_handle
    d.switch_to.window(ani)
    panic = body("panic", device=0x0A000004, counter=5, site=1)
    assert console.post(panic)[0] == 200
    wait_for(lambda: sound(d)["current"] == "panic" and not sound(d)["loud"], 10, "normal")
    wait_for(lambda: "age-warn" in (line_of(d, panic["incident_id"]) or {}).get("cls", ""), 5,
             "the waiting line turns amber")
    wait_for(lambda: "age-danger" in line_of(d, panic["incident_id"])["cls"], 5, "then red")
    wait_for(lambda: "ESCALATED: not taken" in line_of(d, panic["incident_id"])["text"], 10,
             "unattended escalation")
    wait_for(lambda: sound(d)["loud"], 5, "louder")
    assert "escalated" in d.find_element(By.ID, "new-alarm").get_attribute("class")
    d.switch_to.window(sari)
    wait_for(lambda: "not taken" in d.find_element(By.ID, "escalations").text, 10,
             "on the supervisor's escalations")
    d.switch_to.window(ani)
    take(d, panic["incident_id"])
    d.switch_to.window(sari)
    aid = console.query("SELECT id FROM alarms WHERE incident_id = ?",
                        (panic["incident_id"],))[0][0]
    wait_for(lambda: "not closed in time" in d.find_element(
        By.CSS_SELECTOR, f"#escalations .line[data-id='{aid}']").text, 10,
        "overdue escalation on the supervisor's screen")
    wait_for(lambda: sound(d)["current"] == "escalation" and sound(d)["loud"], 5,
             "the supervisor hears it")
    wait_for(lambda: "ani: 1 screens, owns 4" in d.find_element(By.ID, "operators").text, 10,
             "operators' load")
    shot(d, "supervisor")
    audit = console.query("SELECT action, detail FROM audit WHERE alarm_id = ? ORDER BY seq",
                          (aid,))
    assert [a for a, _ in audit] == ["escalate", "take", "escalate"]
