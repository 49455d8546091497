"""The console as a dispatch endpoint: the same answers as the reference receiver
(`panicgw dispatch-server`) for every case docs/dispatch-api.md names, idempotency, and
"2xx only once stored" (a console killed right after answering still has the alarm)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from consolekit import SECRET, TOKEN, ConsoleProc, Session, body, post

from panicgw.dispatch_server.server import DispatchServer


class RefThread:
    """The reference receiver on its own event loop, same token and secret."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = DispatchServer("127.0.0.1", 0, token=TOKEN, secret=SECRET)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    c = ConsoleProc(tmp_path_factory.mktemp("contract")).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def ref():
    r = RefThread()
    yield r
    r.stop()


def _cases() -> list[tuple[str, dict]]:
    """(name, post() keyword arguments) of every case the contract distinguishes."""
    good = body("panic", device=0x0A0B0C0D, counter=0x00500001)
    schema_bad = dict(body("panic", device=0x0A0B0C0E, counter=0x00500002))
    schema_bad["event"] = "robbery"
    no_site = dict(body("panic", device=0x0A0B0C0F, counter=0x00500003))
    no_site["site"] = None  # a button event without a site: the schema's allOf refuses it
    return [
        ("accepted", {"doc": good}),
        ("duplicate", {"doc": good}),
        ("no token", {"doc": body("panic", counter=0x00500010), "token": ""}),
        ("wrong token", {"doc": body("panic", counter=0x00500011), "token": "nope"}),
        ("no signature", {"doc": body("panic", counter=0x00500012), "secret": ""}),
        ("wrong secret", {"doc": body("panic", counter=0x00500013), "secret": "other"}),
        ("stale timestamp", {"doc": body("panic", counter=0x00500014),
                             "timestamp": int(time.time()) - 301}),
        ("future timestamp", {"doc": body("panic", counter=0x00500015),
                              "timestamp": int(time.time()) + 301}),
        ("malformed signature", {"doc": body("panic", counter=0x00500016),
                                 "headers": {"X-Panic-Signature": "v1=abc"}}),
        ("content type", {"doc": body("panic", counter=0x00500017),
                          "headers": {"Content-Type": "text/plain"}}),
        ("not json", {"doc": b"{not json"}),
        ("schema", {"doc": schema_bad}),
        ("site missing", {"doc": no_site}),
        ("no idempotency key", {"doc": body("panic", counter=0x00500018),
                                "headers": {"Idempotency-Key": ""}}),
        ("key mismatch", {"doc": body("panic", counter=0x00500019), "key": "0" * 32}),
    ]


def _verdict(status: int, answer: object) -> str:
    assert isinstance(answer, dict), answer
    return str(answer.get("status") or answer.get("error"))


def test_same_answers_as_the_reference_receiver(console, ref):
    """Every case: same HTTP status, same verdict name (and the console records each one,
    refusals included, in its dispatch log)."""
    got = []
    for name, kw in _cases():
        kw = dict(kw)
        doc = kw.pop("doc")
        r_st, r_ans = post(ref.server.url, doc, **kw)
        c_st, c_ans = console.post(doc, **kw)
        got.append((name, c_st, _verdict(c_st, c_ans)))
        assert (c_st, _verdict(c_st, c_ans)) == (r_st, _verdict(r_st, r_ans)), (name, c_ans,
                                                                                r_ans)
    statuses = {name: st for name, st, _ in got}
    assert statuses["accepted"] == statuses["duplicate"] == 200
    assert statuses["no token"] == statuses["wrong secret"] == statuses["stale timestamp"] == 401
    assert statuses["content type"] == 415 and statuses["schema"] == 422
    assert statuses["not json"] == statuses["key mismatch"] == 400
    verdicts = [v for (v,) in console.query("SELECT verdict FROM receipts ORDER BY id")]
    assert verdicts[-len(got):] == [v for _, _, v in got]
    log = console.log_text()
    assert "dispatch refused: 401 bad_signature" in log and "dispatch refused: 422 schema" in log
    assert TOKEN not in log and SECRET not in log


def test_too_large_body_is_refused_with_413(console):
    st, ans = console.post(b"{" + b" " * (70 * 1024) + b"}")
    assert st == 413, ans


def test_duplicate_changes_nothing(console):
    doc = body("panic", device=0x11112222, counter=0x00700001)
    assert console.post(doc)[0] == 200
    before = [console.query(f"SELECT COUNT(*) FROM {t}")[0][0]
              for t in ("alarms", "messages", "changes", "audit")]
    line = console.query("SELECT id, version, press_count FROM alarms WHERE incident_id = ?",
                         (doc["incident_id"],))
    for attempt in range(3):  # the gateway's retries and the other gateways' copies
        st, ans = console.post(doc, headers={"X-Panic-Attempt": str(attempt + 2),
                                             "X-Panic-Gateway": "gw-other"})
        assert (st, ans["status"]) == (200, "duplicate")
    after = [console.query(f"SELECT COUNT(*) FROM {t}")[0][0]
             for t in ("alarms", "messages", "changes", "audit")]
    assert after == before
    assert console.query("SELECT id, version, press_count FROM alarms WHERE incident_id = ?",
                         (doc["incident_id"],)) == line


def test_answered_2xx_means_stored_even_if_killed_at_once(tmp_path):
    """SIGKILL the console right after each 2xx: every answered alarm is in the database
    when it comes back, and the operators' API shows it."""
    c = ConsoleProc(tmp_path / "kill").start()
    try:
        docs = [body("panic", device=0x20000000 + i, counter=1, site=i % 3) for i in range(3)]
        for d in docs:
            st, ans = c.post(d)
            assert st == 200 and ans["status"] == "accepted"
            c.stop(signal.SIGKILL)
            stored = c.query("SELECT COUNT(*) FROM messages WHERE idempotency_key = ?",
                             (d["idempotency_key"],))[0][0]
            assert stored == 1
            c.start()
        s = Session(c, "ani")
        assert {a["incident_id"] for a in s.alarms()} == {d["incident_id"] for d in docs}
        # ... and a retry of any of them after the restart is a duplicate, not a new line
        assert c.post(docs[0])[1]["status"] == "duplicate"
        assert len(s.alarms()) == 3
    finally:
        c.stop()


def test_dispatch_log_cli_lists_refusals(console):
    from consolekit import run_cli
    r = run_cli("audit", "dispatch-log", "--refused", "--json", "--limit", "5",
                config=console.config)
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert rows and all(x["status"] >= 400 for x in rows)
    assert {"verdict", "errors", "gateway", "remote"} <= set(rows[0])


def test_schema_file_is_the_gateways(console):
    """contract.py is the console's only door to panicgw: the schema it validates with is the
    gateway's file, and no other console module imports panicgw."""
    from panicconsole import contract
    from panicgw.forward.contract import SCHEMA_PATH
    assert contract.schema_path() == Path(SCHEMA_PATH)
    root = Path(contract.__file__).parent
    importers = sorted(p.name for p in root.rglob("*.py")
                       if "panicgw" in p.read_text() and p.name != "contract.py"
                       and any(line.lstrip().startswith(("import panicgw", "from panicgw"))
                               for line in p.read_text().splitlines()))
    assert importers == []
    gateway = Path(__file__).resolve().parents[2] / "gateway"
    assert not [p for p in gateway.rglob("*.py") if any(
        line.lstrip().startswith(("import panicconsole", "from panicconsole"))
        for line in p.read_text().splitlines())], "the gateway must never import the console"


def test_health_counts(console):
    from consolekit import request
    st, h = request("GET", console.base + "/healthz")
    assert st == 200 and h["accepted"] >= 2 and h["duplicate"] >= 1 and h["refused"] >= 5


def test_full_disk_answers_503_never_2xx_and_recovers(tmp_path):
    """The database on a real, full tmpfs: every document is answered 503 (the gateway keeps
    it and retries) or 2xx and then really stored; once space is back the retries land."""
    where = tmp_path / "disk"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs",
                        str(where)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        msg = f"cannot mount a tmpfs (needs root): {r.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    c = None
    try:
        c = ConsoleProc(tmp_path / "c", data_dir=where / "data").start()
        assert c.post(body("panic", device=0x30000000, counter=1))[0] == 200
        filler = where / "filler"
        with filler.open("wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        docs = [body("panic", device=0x30000001 + i, counter=1, site=i % 3,
                     detail="x" * 400) for i in range(40)]
        answers = [c.post(d) for d in docs]
        statuses = [st for st, _ in answers]
        assert 503 in statuses, statuses
        assert set(statuses) <= {200, 503}, statuses
        for st, ans in answers:
            if st == 503:
                assert ans["error"] == "not_stored"
        filler.unlink()
        for d, (st, _) in zip(docs, answers, strict=True):
            if st == 503:  # the gateway's retry, now that there is room again
                st, ans = c.post(d)
                assert (st, ans.get("status")) == (200, "accepted"), ans
        stored = {k for (k,) in c.query("SELECT idempotency_key FROM messages")}
        assert {d["idempotency_key"] for d in docs} <= stored
        assert "NOT stored (answering 503" in c.log_text()
    finally:
        if c is not None:
            c.stop()
        subprocess.run(["umount", str(where)], capture_output=True, timeout=30)
