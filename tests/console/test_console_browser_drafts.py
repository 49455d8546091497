"""What an operator is writing survives the live screen, in a real browser. The alarm's pane
is drawn again on every change to its line, and changes come fastest during the most urgent
alarms: here the button is pressed again and again (posted through the dispatch contract as
a gateway forwards it) and another operator takes the alarm over, while the owner writes a
note and a closing note and picks a disposition. The text, the disposition, the focus and
the caret stay; switching to another alarm and back finds them; what is sent is exactly
what was typed, as the audit trail records it, and a sent draft is gone."""

from __future__ import annotations

from typing import Any

import pytest
from consolekit import (
    ConsoleProc,
    Session,
    body,
    click,
    js,
    lines,
    login,
    start_browser,
    wait_for,
)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from panicgw.forward.payload import make_incident_id

DEVICE, COUNTER = 0x0D4AF7ED, 0x00070001
OTHER_DEVICE, OTHER_COUNTER = 0x0D4AF7EE, 0x00080001
NOTE = "Unit 7 dispatched by radio, ETA 4 min"
CLOSING = "Two armed suspects arrested by unit 7"
REASON = "Unit 7 reports to me"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    console = ConsoleProc(tmp_path_factory.mktemp("drafts")).start()
    driver = start_browser()
    yield console, driver
    driver.quit()
    console.stop()


def press(console: ConsoleProc, n: int) -> None:
    """The ``n``-th press of the one incident, as the gateway forwards it."""
    st, ans = console.post(body("panic", device=DEVICE, counter=COUNTER,
                                frame_counter=COUNTER + n - 1, press_count=n))
    assert (st, ans["status"]) == (200, "accepted"), ans


def pane(d: Any) -> dict[str, Any]:
    """The pane as the operator has it: the alarm and version shown, the draft controls'
    values and state, and where the focus and the caret are."""
    return js(d, """const $ = (id) => document.getElementById(id) || {};
        const f = document.activeElement;
        return {alarm: Number($('detail').dataset.alarm),
          version: Number($('detail').dataset.version),
          presses: $('press-count').textContent, owner: $('owner-box').innerText,
          note: $('note-text').value, close: $('close-note').value,
          disposition: $('disposition').value, reason: $('takeover-reason').value,
          disabled: $('note-text').disabled, focus: f ? f.id : null,
          caret: f && typeof f.selectionStart === 'number'
            ? [f.selectionStart, f.selectionEnd] : null}""")


def redrawn(d: Any, after: int, what: str) -> dict[str, Any]:
    """The pane once it was drawn again for a version newer than ``after``."""
    return wait_for(lambda: (p := pane(d))["version"] > after and p, 10, what)


def audit(console: ConsoleProc, aid: int) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in console.query("SELECT username, action, COALESCE(detail, '') "
                                            "FROM audit WHERE alarm_id = ? ORDER BY seq",
                                            (aid,))]


def test_drafts_survive_repeat_presses_and_another_operator(world):
    c, d = world
    incident = make_incident_id(DEVICE, COUNTER, "panic")
    press(c, 1)
    login(d, c.base, "ani")
    click(d, f"#queue .line[data-incident='{incident}']")
    click(d, "#take")
    p = wait_for(lambda: (p := pane(d))["owner"].startswith("Taken by you") and p, 10,
                 "ani owns it")
    aid = p["alarm"]

    # ani starts the note; the button is pressed again: the pane is drawn again around it
    note = d.find_element(By.ID, "note-text")
    note.send_keys(NOTE[:17])
    press(c, 2)
    p = redrawn(d, p["version"], "the pane after press 2")
    assert p["presses"] == "2"
    assert (p["note"], p["focus"], p["caret"]) == (NOTE[:17], "note-text", [17, 17])
    note.send_keys(NOTE[17:])  # the same element: it was never replaced
    assert pane(d)["note"] == NOTE

    # the disposition and the closing note, the caret moved back into the text: another press
    click(d, "#disposition option[value='real']")
    closing = d.find_element(By.ID, "close-note")
    closing.send_keys(CLOSING.replace("armed ", ""))
    js(d, "arguments[0].setSelectionRange(4, 4)", closing)  # after "Two "
    seen = pane(d)["version"]
    press(c, 3)
    p = redrawn(d, seen, "the pane after press 3")
    assert p["presses"] == "3"
    assert (p["note"], p["disposition"], p["close"]) == (NOTE, "real",
                                                          CLOSING.replace("armed ", ""))
    assert (p["focus"], p["caret"]) == ("close-note", [4, 4])
    ActionChains(d).send_keys("armed ").perform()  # lands where the caret was
    wait_for(lambda: pane(d)["close"] == CLOSING, 10, "the word typed at the caret")

    # another operator takes it over: ani can no longer send, but loses nothing
    budi = Session(c, "budi")
    seen = pane(d)["version"]
    st, ans = budi.api("POST", f"/api/alarms/{aid}/take_over", {"reason": "ani busy"})
    assert st == 200, ans
    p = redrawn(d, seen, "budi's take-over on ani's pane")
    assert p["owner"].startswith("Taken by Budi") and p["disabled"]
    assert (p["note"], p["disposition"], p["close"]) == (NOTE, "real", CLOSING)

    # another alarm and back: the drafts are kept per alarm
    other = make_incident_id(OTHER_DEVICE, OTHER_COUNTER, "panic")
    assert c.post(body("panic", device=OTHER_DEVICE, counter=OTHER_COUNTER, site=1))[0] == 200
    click(d, f"#queue .line[data-incident='{other}']")
    p = wait_for(lambda: (p := pane(d))["alarm"] not in (aid, None) and p, 10, "the other alarm")
    assert (p["note"], p["disposition"], p["close"]) == ("", "", "")
    click(d, f"#queue .line[data-incident='{incident}']")
    p = wait_for(lambda: (p := pane(d))["alarm"] == aid and p, 10, "the first alarm again")
    assert (p["note"], p["disposition"], p["close"]) == (NOTE, "real", CLOSING)

    # ani takes it back; the take-over reason, half typed, survives a press too
    click(d, "#take-over")
    reason = d.find_element(By.ID, "takeover-reason")
    reason.send_keys(REASON[:8])
    seen = pane(d)["version"]
    press(c, 4)
    p = redrawn(d, seen, "the pane after press 4")
    assert (p["presses"], p["reason"], p["focus"]) == ("4", REASON[:8], "takeover-reason")
    reason.send_keys(REASON[8:])
    click(d, "#takeover-confirm")
    p = wait_for(lambda: (p := pane(d))["owner"].startswith("Taken by you") and p, 10,
                 "ani owns it again")
    assert (p["note"], p["disposition"], p["close"], p["disabled"]) == (NOTE, "real", CLOSING,
                                                                        False)

    # her own tick draws the pane again too; then the note and the close go as typed
    click(d, ".step-check", 0)
    wait_for(lambda: "done" in d.find_element(By.CSS_SELECTOR, "#steps li").get_attribute(
        "class"), 10, "step 1 ticked")
    assert pane(d)["note"] == NOTE
    click(d, "#add-note")
    wait_for(lambda: audit(c, aid)[-1][1] == "note", 10, "the note in the audit")
    wait_for(lambda: pane(d)["note"] == "", 10, "the sent note gone from the box")
    assert (pane(d)["disposition"], pane(d)["close"]) == ("real", CLOSING)
    click(d, "#close")
    wait_for(lambda: not any(x["incident"] == incident for x in lines(d)), 10, "line closed")
    open_steps = ", ".join(str(i) for i in range(2, len(d.find_elements(
        By.CSS_SELECTOR, "#steps li")) + 1))
    assert audit(c, aid) == [
        ("ani", "take", ""),
        ("budi", "take_over", "from ani: ani busy"),
        ("ani", "take_over", f"from budi: {REASON}"),
        ("ani", "step", audit(c, aid)[3][2]),
        ("ani", "note", NOTE),
        ("ani", "close", f"real: {CLOSING} (steps not ticked: {open_steps})"),
    ]
    assert audit(c, aid)[3][2].startswith("1. ")
    assert js(d, "return Detail.drafts.has(arguments[0])", aid) is False
