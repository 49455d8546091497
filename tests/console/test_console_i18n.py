"""Both message catalogues (English, Bahasa Indonesia) have every key the pages and the
server use, and the same keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import panicconsole
from panicconsole import auth, plans
from panicconsole.alarms.rules import DISPOSITIONS
from panicconsole.web.pages import STATIC

SRC = Path(panicconsole.__file__).parent


def _catalogue(lang: str) -> dict[str, str]:
    return json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


def _t_calls(text: str) -> list[str]:
    """The argument text of every ``PC.t(...)`` call (parentheses balanced)."""
    out = []
    for m in re.finditer(r"PC\.t\(", text):
        depth, k = 1, m.end()
        while k < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[k], 0)
            k += 1
        out.append(text[m.end():k - 1])
    return out


def _used_keys() -> set[str]:
    keys: set[str] = set()
    for f in list(STATIC.glob("*.html")) + list((STATIC / "js").glob("*.js")):
        text = f.read_text(encoding="utf-8")
        keys |= set(re.findall(r'data-i18n(?:-title|-placeholder)?="([a-z0-9_]+)"', text))
        keys |= set(re.findall(r"\{\{t:([a-z0-9_]+)\}\}", text))
        for args in _t_calls(text):
            first = args.split(",")[0] if not args.lstrip().startswith("{") else ""
            # a literal key, or both keys of a `cond ? "a" : "b"` choice
            keys |= set(re.findall(r'(?:^|\? |: )"([a-z][a-z0-9_]*)"', first.strip()))
    # keys built at run time: events, priorities, dispositions, roles, escalations, actions
    events = ["panic", "test", "tamper", "cancel", "supervision_lost", "supervision_restore",
              "low_battery", "low_battery_restore", "gateway_checkin", "gateway_trouble",
              "gateway_trouble_restore", "gateway_silent"]
    keys |= {f"ev_{e}" for e in events} | {f"prio_{p}" for p in range(1, 5)}
    keys |= {f"disp_{x}" for x in DISPOSITIONS} | {f"role_{r}" for r in auth.ROLES}
    keys |= {"esc_unattended", "esc_overdue", "kind_shop", "kind_home"}
    keys |= {f"act_{a}" for a in ("take", "take_over", "step", "step_unticked", "note",
                                  "close", "escalate", "gateway_silent", "refused")}
    # error codes the server answers with (ActionError and the web layer)
    for f in SRC.rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        keys |= set(re.findall(r'ActionError\(\d+, "([a-z_]+)"', text))
        keys |= set(re.findall(r'"(login_[a-z]+)"', text))
    keys |= {"csrf", "bad_origin", "forbidden"}
    return keys


def test_catalogues_have_the_same_keys():
    en, id_ = _catalogue("en"), _catalogue("id")
    assert sorted(set(en) ^ set(id_)) == []
    assert all(v.strip() for v in en.values()) and all(v.strip() for v in id_.values())


def test_every_key_used_is_in_both_catalogues():
    used = _used_keys()
    prefixes = {k for k in used if k.endswith("_")}  # "ev_" + event: the keys listed above
    assert prefixes <= {"ev_", "prio_", "disp_", "role_", "esc_", "kind_", "act_"}, prefixes
    used -= prefixes
    assert {"live", "offline", "owner_you", "owner_is", "sound_blocked_alarm"} <= used
    for lang in ("en", "id"):
        missing = sorted(k for k in used if k not in _catalogue(lang))
        assert missing == [], f"{lang}.json lacks {missing}"


def test_placeholders_match_between_languages():
    en, id_ = _catalogue("en"), _catalogue("id")
    for k in en:
        assert set(re.findall(r"\{(\w+)\}", en[k])) == set(re.findall(r"\{(\w+)\}", id_[k])), k


def test_default_plans_in_both_languages():
    for event, steps in plans.DEFAULTS.items():
        assert steps and all(s["en"] and s["id"] and s["en"] != s["id"] for s in steps), event
