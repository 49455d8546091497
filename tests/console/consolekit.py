"""What the console tests share: a real `panicconsole serve` process on a free port, dispatch
documents built and signed by the gateway's own code, and a headless Chromium (Debian's
chromium + chromium-driver through Selenium) with one fresh profile per test module.

Browser tests skip when Chromium is missing, except under CI=true where they fail: `make
test` installs it (see the Makefile), so a CI run without it is a broken setup.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from panicgw.forward.contract import SIGNATURE_HEADER, sign
from panicgw.forward.payload import build_payload, make_incident_id

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "console-test-token-0123456789"
SECRET = "console-test-secret-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "correct horse battery"
T = TypeVar("T")
SCREENSHOTS_ENV = "PANIC_SCREENSHOTS"
DOCS_IMG = ROOT / "docs" / "img"
shots_dir: Path | None = None  # this run's tmp dir for screenshots (set by conftest.py)

SITES = [
    {"name": "Toko Emas Mulia", "kind": "shop", "address": "Jl. Malioboro 52, Yogyakarta",
     "lat": -7.7925, "lon": 110.3658, "contact": "Pak Budi", "phone": "+62 811 2345 678"},
    {"name": "Apotek Sehat", "kind": "shop", "address": "Jl. Kaliurang 10, Yogyakarta",
     "lat": -7.7601, "lon": 110.3802, "contact": "Ibu Ani", "phone": "+62 812 1111 2222"},
    {"name": "Rumah Pak Joko", "kind": "home", "address": "Jl. Solo 7, Yogyakarta",
     "lat": -7.7830, "lon": 110.4010, "contact": "Pak Joko", "phone": "+62 813 3333 4444"},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """``pred()``'s first truthy value within ``timeout`` s, else AssertionError."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = pred()
        except Exception as e:  # noqa: BLE001 (a page in flux; retry until the deadline)
            last = e
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def click(driver: Any, css: str, nth: int = 0) -> None:
    """Click the ``nth`` match of ``css`` once it is displayed and enabled. Found and clicked
    in one try: a live update may re-render the queue or the detail pane between the two
    (a stale element), so a try that fails is repeated until the deadline."""
    from selenium.webdriver.common.by import By

    def go() -> bool:
        e = driver.find_elements(By.CSS_SELECTOR, css)[nth]
        if not (e.is_displayed() and e.is_enabled()):
            return False
        e.click()
        return True
    wait_for(go, 10, f"a clickable {css}")


def read_live(read: Callable[[], T], timeout: float = 10) -> T:
    """``read()``'s value, whatever it is (the caller asserts on it). Tried again while it
    fails with a stale element: a live update re-rendered the part of the page it read
    between finding an element and reading it."""
    from selenium.common.exceptions import StaleElementReferenceException

    end = time.monotonic() + timeout
    while True:
        try:
            return read()
        except StaleElementReferenceException:
            if time.monotonic() >= end:
                raise


# -- dispatch documents ------------------------------------------------------------------------


def body(event: str = "panic", *, device: int = 0x1234ABCD, site: int | dict | None = 0,
         counter: int = 0x00030001, frame_counter: int | None = None, press_count: int = 1,
         gateway: str = "gw-test", at: float | None = None, detail: str = "",
         battery_mv: int = 3020, label: str = "kasir") -> dict[str, Any]:
    """A dispatch body exactly as a gateway builds it (panicgw.dispatch_payload)."""
    at = time.time() if at is None else at
    gw_event = event.startswith("gateway_")
    s = None if gw_event else (SITES[site] if isinstance(site, int) else site)
    dev = None if gw_event else {"id": device, "label": label, "battery_mv": battery_mv,
                                 "low_battery": event == "low_battery", "firmware": "0.3.0"}
    incident = (f"{gateway}-{event}-{int(at * 1000)}" if gw_event
                else make_incident_id(device, counter, event))
    return build_payload(
        incident_id=incident, event=event, gateway_id=gateway, first_heard=at, site=s,
        device=dev, paths=[] if gw_event else [{"path": "lora", "rssi": -97.5, "snr": 6.25,
                                                 "at": at}],
        press_count=press_count, counter=None if gw_event else counter,
        frame_counter=frame_counter, last_heard=at, forwarded=at, detail=detail)


def post(url: str, doc: dict[str, Any] | bytes, *, token: str = TOKEN, secret: str = SECRET,
         key: str | None = None, headers: dict[str, str] | None = None,
         cafile: str | None = None, timestamp: int | None = None) -> tuple[int, Any]:
    """POST like the gateway's forwarder: bearer token, signature, Idempotency-Key."""
    raw = doc if isinstance(doc, bytes) else json.dumps(doc, separators=(",", ":")).encode()
    h = {"Content-Type": "application/json", "User-Agent": "panicgw/test",
         "X-Panic-Attempt": "1"}
    if token:
        h["Authorization"] = f"Bearer {token}"
    if secret:
        h[SIGNATURE_HEADER] = sign(secret.encode(), int(time.time()) if timestamp is None
                                   else timestamp, raw)
    if isinstance(doc, dict):
        h["Idempotency-Key"] = key if key is not None else doc["idempotency_key"]
        h["X-Panic-Gateway"] = doc.get("gateway_id", "")
    h.update(headers or {})
    return request("POST", url, raw, h, cafile=cafile)


def request(method: str, url: str, data: bytes | None = None,
            headers: dict[str, str] | None = None, cafile: str | None = None,
            timeout: float = 10.0) -> tuple[int, Any]:
    scheme, rest = url.split("://", 1)
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    if scheme == "https":
        ctx = ssl.create_default_context(cafile=cafile)
        c: http.client.HTTPConnection = http.client.HTTPSConnection(host, int(port),
                                                                    timeout=timeout,
                                                                    context=ctx)
    else:
        c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request(method, "/" + path, body=data, headers=headers or {})
        r = c.getresponse()
        text = r.read()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text.decode("utf-8", "replace")
    finally:
        c.close()


# -- the console process -----------------------------------------------------------------------


class ConsoleProc:
    """`panicconsole serve` with its own data dir, users, and config."""

    def __init__(self, workdir: Path, *, tls: bool = False, extra: str = "",
                 users: tuple[tuple[str, str], ...] = (("ani", "operator"), ("budi", "operator"),
                                                       ("sari", "supervisor"),
                                                       ("admin", "admin")),
                 heartbeat_s: float = 0.5, data_dir: Path | None = None) -> None:
        self.dir = workdir
        self.data = data_dir or workdir / "data"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self.cert = self.dir / "tls" / "console.crt"
        if tls:
            run_cli("cert", "selfsigned", "--out-dir", str(self.dir / "tls"))
        self.config = self.dir / "console.toml"
        self.config.write_text(
            f'[console]\nname = "Polsek Test"\ndata_dir = "{self.data}"\n'
            'log_format = "text"\nlanguage = "en"\n'
            f'[server]\nhost = "127.0.0.1"\nport = {self.port}\n'
            + (f'tls_cert = "{self.cert}"\ntls_key = "{self.dir / "tls" / "console.key"}"\n'
               if tls else "")
            + f'[dispatch]\ntoken = "{TOKEN}"\nsecret = "{SECRET}"\n'
            f'[live]\nheartbeat_s = {heartbeat_s}\n' + extra)
        # accounts straight into the database the server will open (the `user add` command
        # itself is tested in test_console_cli.py; this saves a process start per account)
        from panicconsole import auth
        from panicconsole.db import connect
        db = connect(self.data / "console.db")
        try:
            for name, role in users:
                auth.add_user(db, name, PASSWORD, role, display_name=name.capitalize(),
                              lang="en")
        finally:
            db.close()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "console.log"

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        return self.base + "/v1/events"

    @property
    def db(self) -> Path:
        return self.data / "console.db"

    def start(self) -> ConsoleProc:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([str(BIN / "panicconsole"), "serve", "--config",
                                      str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        wait_for(lambda: self._healthy(), 20, f"console on {self.base} (log {self.log_path})",
                 every=0.05)
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"console exited {self.proc.returncode}: "
                                 + self.log_path.read_text()[-2000:])
        try:
            st, _ = request("GET", self.base + "/healthz", cafile=str(self.cert) if self.tls
                            else None, timeout=1)
        except OSError:
            return False
        return st == 200

    def post(self, doc: dict[str, Any] | bytes, **kw: Any) -> tuple[int, Any]:
        if self.tls:
            kw.setdefault("cafile", str(self.cert))
        return post(self.events_url, doc, **kw)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import sqlite3
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()


def run_cli(*args: str, config: Path | None = None, env: dict[str, str] | None = None,
            check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "panicconsole"), *args]
    if config is not None:
        cmd += ["--config", str(config)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, input=input,
                       env={**os.environ, **(env or {})})
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


# -- the browser -----------------------------------------------------------------------------------


def have_browser() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def need_browser() -> None:
    if have_browser():
        return
    msg = (f"Chromium is missing ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium "
           "chromium-driver (make test installs them when it runs as root)")
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def start_browser(*extra_args: str, width: int = 1500, height: int = 950) -> Any:
    """A headless Chromium with a fresh profile; quit() removes the profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    need_browser()
    profile = tempfile.mkdtemp(prefix="pc-chromium-")
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
              f"--window-size={width},{height}", "--lang=en-US", *extra_args):
        o.add_argument(a)
    o.accept_insecure_certs = True  # the test's own self-signed console certificate
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
    driver.set_page_load_timeout(30)
    quit_ = driver.quit

    def quit_and_clean() -> None:
        with contextlib.suppress(Exception):
            quit_()
        shutil.rmtree(profile, ignore_errors=True)
    driver.quit = quit_and_clean  # type: ignore[method-assign]
    return driver


def login(driver: Any, base: str, username: str, password: str = PASSWORD,
          start_shift: bool = True) -> None:
    """Sign in through the login form, wait for the app, click 'start shift'."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/login")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready === '1'"),
             15, f"{username}'s console page")
    if start_shift:
        driver.find_element(By.ID, "start-shift").click()


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def lines(driver: Any) -> list[dict[str, Any]]:
    """The queue's lines as the page shows them: id, incident, classes, text."""
    return js(driver, """return [...document.querySelectorAll('#queue .line')].map(e => ({
        id: Number(e.dataset.id), incident: e.dataset.incident, event: e.dataset.event,
        cls: e.className, text: e.innerText}))""")


def shot(driver: Any, name: str) -> Path:
    """Save the screenshot ``console-<name>.png`` that docs/console.md shows: into docs/img/
    only when asked (``PANIC_SCREENSHOTS=1``, as ``make screenshots`` does), else into this
    run's pytest tmp dir, so the step runs on every test run and leaves the tree clean."""
    if os.environ.get(SCREENSHOTS_ENV) == "1":
        where = DOCS_IMG
    else:
        assert shots_dir is not None, "tests/console/conftest.py sets consolekit.shots_dir"
        where = shots_dir
    out = where / f"console-{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(out))
    return out


def csp_violations(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")
            if "Content Security Policy" in e.get("message", "")]


# -- an operator over plain HTTP (API tests without a browser) -------------------------------------


class Session:
    """A signed-in user driving the JSON API like the page does (cookie + CSRF header)."""

    def __init__(self, console: ConsoleProc, username: str, password: str = PASSWORD,
                 host: str = "127.0.0.1") -> None:
        import http.cookiejar
        import re
        import urllib.request

        self.base = console.base.replace("127.0.0.1", host)
        self.jar = http.cookiejar.CookieJar()
        handlers: list[Any] = [urllib.request.HTTPCookieProcessor(self.jar)]
        if console.tls:
            handlers.append(urllib.request.HTTPSHandler(
                context=ssl.create_default_context(cafile=str(console.cert))))
        self.opener = urllib.request.build_opener(*handlers)
        self.status, page = self.raw("GET", "/login")
        m = re.search(r'name="csrf" value="([^"]+)"', page)
        assert m, page[:500]
        form = f"csrf={m.group(1)}&username={username}&password={password}".replace(" ", "+")
        self.login_status, self.login_page = self.raw(
            "POST", "/login", form.encode(),
            {"Content-Type": "application/x-www-form-urlencoded"})
        self.csrf = ""
        if self.signed_in:
            st, me = self.api("GET", "/api/me")
            assert st == 200, me
            self.csrf = me["csrf"]
            self.me = me["user"]

    @property
    def signed_in(self) -> bool:
        return any(c.name == "pc_session" for c in self.jar)

    def raw(self, method: str, path: str, data: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=headers or {})
        try:
            with self.opener.open(req, timeout=10) as r:
                self.last_headers = r.headers
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            self.last_headers = e.headers
            return e.code, e.read().decode("utf-8", "replace")

    def api(self, method: str, path: str, doc: Any = None, *, csrf: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        h = {"Content-Type": "application/json"}
        if method != "GET":
            h["X-CSRF-Token"] = self.csrf if csrf is None else csrf
        h.update(headers or {})
        st, text = self.raw(method, path, None if method == "GET" else
                            json.dumps(doc or {}).encode(), h)
        try:
            return st, json.loads(text)
        except ValueError:
            return st, text

    def alarms(self) -> list[dict[str, Any]]:
        st, s = self.api("GET", "/api/state")
        assert st == 200, s
        return s["alarms"]

    def alarm(self, incident_id: str) -> dict[str, Any]:
        for a in self.alarms():
            if a["incident_id"] == incident_id:
                return a
        raise AssertionError(f"no open line for {incident_id}")
