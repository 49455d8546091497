"""Accounts and security over real HTTPS: cookie flags, CSRF on every state change, roles,
login rate limiting, refusals logged and audited, sessions stored hashed, and two operators
taking the same alarm at the same moment (exactly one wins)."""

from __future__ import annotations

import http.client
import re
import ssl
import threading

import pytest
from consolekit import PASSWORD, ConsoleProc, Session, body


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    c = ConsoleProc(tmp_path_factory.mktemp("sec"), tls=True,
                    extra="[security]\nlogin_max_failures = 3\nlogin_window_s = 60\n").start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def ani(console):
    return Session(console, "ani")


def test_session_cookie_flags_under_tls(console):
    """The Set-Cookie headers of a login over HTTPS, read off the wire."""
    ctx = ssl.create_default_context(cafile=str(console.cert))
    c = http.client.HTTPSConnection("127.0.0.1", console.port, context=ctx, timeout=10)
    try:
        c.request("GET", "/login")
        r = c.getresponse()
        page = r.read().decode()
        login_cookie = r.getheader("Set-Cookie")
        assert r.getheader("Strict-Transport-Security")
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        c.request("POST", "/login", body=f"csrf={token}&username=ani&password={PASSWORD}",
                  headers={"Content-Type": "application/x-www-form-urlencoded",
                           "Cookie": f"pc_login={token}"})
        r = c.getresponse()
        r.read()
        cookie = [v for k, v in r.getheaders()
                  if k.lower() == "set-cookie" and v.startswith("pc_session=")][0]
    finally:
        c.close()
    assert r.status == 303
    for flag in ("HttpOnly", "SameSite=Strict", "Secure"):
        assert flag in cookie and flag in login_cookie, flag
    # the database keeps only a hash of the cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert len(value) >= 40 and value.encode() not in console.db.read_bytes()


def test_csrf_refused_on_every_state_change(console, ani):
    assert console.post(body("panic", device=0x51000001))[0] == 200
    aid = ani.alarm(body("panic", device=0x51000001)["incident_id"])["id"]
    changes = [("POST", f"/api/alarms/{aid}/take", {}), ("POST", f"/api/alarms/{aid}/note",
                                                          {"text": "x"}),
               ("POST", "/api/me/lang", {"lang": "id"}), ("POST", "/logout", {}),
               ("POST", "/api/admin/users", {"username": "x"})]
    for method, path, doc in changes:
        for bad in ("", "forged-token"):
            st, ans = ani.api(method, path, doc, csrf=bad)
            assert (st, ans) == (403, {"error": "csrf"}), (path, bad)
        # a right token from another site's page (Origin) is refused too
        st, ans = ani.api(method, path, doc, headers={"Origin": "https://evil.example"})
        assert (st, ans) == (403, {"error": "bad_origin"}), path
    # nothing happened: the line is still not taken and ani is still signed in
    assert ani.alarm(body("panic", device=0x51000001)["incident_id"])["owner"] is None
    assert ani.api("GET", "/api/me")[0] == 200
    # every refusal is in the audit trail and the log
    refused = console.query("SELECT COUNT(*) FROM audit WHERE action = 'refused' AND "
                            "username = 'ani' AND detail LIKE '%csrf%'")[0][0]
    assert refused >= 2 * len(changes)
    assert console.log_text().count("refused: POST") >= 3 * len(changes)
    # and the login form itself needs its token
    s = Session(console, "ani", password="x")
    st, _ = s.raw("POST", "/login", b"username=ani&password=" + PASSWORD.encode(),
                  {"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 403 and not s.signed_in


def test_roles(console, ani):
    sari = Session(console, "sari")  # supervisor
    admin = Session(console, "admin")
    for path in ("/api/admin/users", "/api/admin/receipts", "/api/admin/plans",
                 "/api/audit.csv", "/api/supervisor"):
        st, ans = ani.api("GET", path)
        assert (st, ans) == (403, {"error": "forbidden"}), path
    st, page = ani.raw("GET", "/admin")
    assert st == 403 and 'id="forbidden"' in page
    st, ans = ani.api("POST", "/api/admin/users", {"username": "mallory", "password": "x" * 12,
                                                   "role": "admin"})
    assert st == 403
    for path in ("/api/admin/users", "/api/admin/receipts"):
        assert sari.api("GET", path)[0] == 403
    assert sari.api("GET", "/api/supervisor")[0] == 200
    st, csv_text = sari.raw("GET", "/api/audit.csv")
    assert st == 200 and csv_text.startswith("seq,time_utc,user,role,action")
    assert admin.api("GET", "/api/admin/receipts")[0] == 200
    st, ans = admin.api("POST", "/api/admin/users", {"username": "dewi", "password": "y" * 12,
                                                     "role": "operator", "lang": "id"})
    assert st == 200
    assert Session(console, "dewi", password="y" * 12).signed_in
    # refusals recorded with who and what
    rows = console.query("SELECT username, detail FROM audit WHERE action = 'refused' AND "
                         "detail LIKE '%forbidden%'")
    who = {u for u, _ in rows}
    assert {"ani", "sari"} <= who
    assert any("/admin" in d for u, d in rows if u == "ani")
    assert "mallory" not in [r[0] for r in console.query("SELECT username FROM users")]


def test_take_race_exactly_one_wins(console):
    """Two operators press 'take' at the same instant, 15 times: one owner each time."""
    ops = {"ani": Session(console, "ani"), "dewi": Session(console, "dewi",
                                                           password="y" * 12)}
    for i in range(15):
        doc = body("panic", device=0x60000000 + i, counter=1)
        assert console.post(doc)[0] == 200
        aid = ops["ani"].alarm(doc["incident_id"])["id"]
        barrier = threading.Barrier(2)
        results: dict[str, int] = {}

        def go(name: str, aid: int = aid, barrier: threading.Barrier = barrier,
               results: dict[str, int] = results) -> None:
            barrier.wait()
            results[name] = ops[name].api("POST", f"/api/alarms/{aid}/take")[0]
        ts = [threading.Thread(target=go, args=(n,)) for n in ops]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        assert sorted(results.values()) == [200, 409], results
        winner = [n for n, st in results.items() if st == 200][0]
        assert ops["ani"].alarm(doc["incident_id"])["owner"]["username"] == winner
        takes = console.query("SELECT username FROM audit WHERE alarm_id = ? AND "
                              "action = 'take'", (aid,))
        assert takes == [(winner,)]


def test_logout_ends_the_session_and_is_audited(console):
    s = Session(console, "budi")
    assert s.api("POST", "/logout")[0] == 200
    assert s.api("GET", "/api/me")[0] == 401
    assert s.api("POST", "/api/me/lang", {"lang": "id"})[0] == 401
    assert console.query("SELECT action FROM audit WHERE username = 'budi' ORDER BY seq "
                         "DESC LIMIT 2") == [("logout",), ("login",)]


def test_login_rate_limited_and_audited(console):
    """Last in this module: it locks the test's address out."""
    for _ in range(3):
        s = Session(console, "budi", password="wrong password!")
        assert s.login_status == 401 and not s.signed_in
    s = Session(console, "budi")  # the right password, but locked now
    assert s.login_status == 429 and not s.signed_in
    assert int(s.last_headers["Retry-After"]) > 0
    actions = [a for (a,) in console.query(
        "SELECT action FROM audit WHERE username = 'budi' AND action LIKE 'login%' "
        "ORDER BY seq")]
    assert actions[-4:] == ["login_failed"] * 3 + ["login_locked"]
    assert "failed login for 'budi'" in console.log_text()
    assert Session(console, "sari").signed_in  # the limit is per user ...
    tries = 0
    while Session(console, f"spray{tries}", password="guess guess").login_status == 401:
        tries += 1  # ... and, with a margin for shared addresses, per address
        assert tries < 20
    assert Session(console, "sari").login_status == 429
