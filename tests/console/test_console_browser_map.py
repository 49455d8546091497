"""What else an operator sees, in a real browser: the map (pins for open alarms and gateway
trouble on a plain background without tiles; the configured tile server when set), a
flood of presses and alarms grouped by site, the gateways panel (bridge missing, silence),
the language chosen per operator, the admin page, and no Content-Security-Policy
violation on any page."""

from __future__ import annotations

import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from consolekit import (
    ConsoleProc,
    body,
    click,
    csp_violations,
    js,
    lines,
    login,
    run_cli,
    shot,
    start_browser,
    wait_for,
)
from selenium.webdriver.common.by import By


def _png() -> bytes:
    """A 256x256 grey PNG tile."""
    raw = b"".join(b"\x00" + b"\xcc" * 256 for _ in range(256))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 256, 256, 8, 0, 0,
                                                              0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class TileServer:
    def __init__(self) -> None:
        tile, requests = _png(), []

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(tile)))
                self.end_headers()
                self.wfile.write(tile)

            def log_message(self, *a: object) -> None:
                pass
        self.requests = requests
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    # A gateway is reported silent 5 s after it was last heard (gw-pasar is registered in
    # the map test, where its silence is awaited; the flood's gw-test may go silent too).
    console = ConsoleProc(tmp_path_factory.mktemp("map"), heartbeat_s=0.5,
                          extra="[gateways]\ncheckin_overdue_s = 5\n").start()
    driver = start_browser()
    yield console, driver
    driver.quit()
    console.stop()


def pins(d) -> dict:
    return js(d, """return {alarm: document.querySelectorAll('#map path.pin-alarm').length,
        panic: document.querySelectorAll('#map path.pin-prio-1').length,
        gateway: document.querySelectorAll('#map path.pin-gateway').length,
        tiles: document.querySelectorAll('#map img.leaflet-tile').length}""")


def test_flood_grouped_by_site_with_press_counts(world):
    console, d = world
    login(d, console.base, "ani")
    docs = []
    for site in range(3):  # one incident per site pressed 20 times, in bursts
        for n in range(1, 21):
            docs.append(body("panic", device=0x0C000000 + site, counter=0x100, site=site,
                             frame_counter=0x100 + n, press_count=n))
    docs += [body("panic", device=0x0C000010, counter=1, site=0),  # a second button there
             body("tamper", device=0x0C000011, counter=2, site=0)]
    for doc in docs:
        assert console.post(doc)[0] == 200
    # Their lines (a slow run may add gw-test's silence: 5 s without a word from it).
    incidents = {doc["incident_id"] for doc in docs}

    def flood() -> list[dict]:
        return [x for x in lines(d) if x["incident"] in incidents]

    wait_for(lambda: len(flood()) == 5, 10, "five lines for 62 documents")
    wait_for(lambda: sum("×20" in x["text"] for x in flood()) == 3, 10, "press counts")
    groups = js(d, """return [...document.querySelectorAll('#queue .group')]
        .filter(g => !g.dataset.site.startsWith('gw:'))
        .map(g => g.querySelectorAll('.line').length)""")
    assert sorted(groups) == [1, 1, 3]
    head = d.find_element(By.CSS_SELECTOR, "#queue .group .group-head").text
    assert "Toko Emas Mulia" in head and "3 lines" in head
    shot(d, "flood")


def test_map_pins_without_tiles_and_gateway_trouble(world):
    console, d = world
    wait_for(lambda: pins(d)["alarm"] == 5 and pins(d)["panic"] == 4, 10, "a pin per line")
    assert pins(d)["tiles"] == 0  # no tile server configured: a plain background
    bg = js(d, "return getComputedStyle(document.getElementById('map')).backgroundImage")
    assert "linear-gradient" in bg
    assert console.post(body("gateway_trouble", gateway="gw-test",
                             detail="bridge unplugged"))[0] == 200
    wait_for(lambda: "radio bridge missing" in d.find_element(
        By.CSS_SELECTOR, "#gateways tr[data-gateway='gw-test']").text, 10, "bridge trouble")
    wait_for(lambda: pins(d)["gateway"] == 1, 10, "the troubled gateway on the map")
    # a gateway registered and then never heard goes silent: a line, the panel and a pin
    run_cli("gateway", "set", "gw-pasar", "--name", "Gateway Pasar", "--lat", "-7.80",
            "--lon", "110.36", config=console.config)
    wait_for(lambda: "SILENT" in d.find_element(
        By.CSS_SELECTOR, "#gateways tr[data-gateway='gw-pasar']").text, 15, "silent gateway")
    wait_for(lambda: pins(d)["gateway"] == 2, 10, "both gateways on the map")
    assert any(x["event"] == "gateway_silent" for x in lines(d))
    js(d, "document.querySelector('#map path.pin-prio-1').dispatchEvent("  # a pin opens ...
          "new MouseEvent('click', {bubbles: true}))")  # ... its alarm
    wait_for(lambda: d.find_element(By.ID, "detail").get_attribute("data-alarm"), 5, "detail")
    shot(d, "map")
    assert csp_violations(d) == []


def test_tile_server_configured(tmp_path):
    tiles = TileServer()
    console = ConsoleProc(tmp_path / "tiles", heartbeat_s=0.5, users=(("ani", "operator"),),
                          extra=f'[map]\ntile_url = "http://127.0.0.1:{tiles.port}/t/{{z}}/'
                                f'{{x}}/{{y}}.png"\nattribution = "Peta Polsek"\n').start()
    d = start_browser()
    try:
        assert console.post(body("panic", device=0x0D000001, counter=1))[0] == 200
        login(d, console.base, "ani")
        wait_for(lambda: pins(d)["tiles"] > 0 and js(
            d, "return document.querySelectorAll('#map img.leaflet-tile-loaded').length") > 0,
            10, "tiles from the configured server")
        assert tiles.requests and all(p.startswith("/t/") for p in tiles.requests)
        assert pins(d)["alarm"] == 1
        assert "Peta Polsek" in d.find_element(By.CSS_SELECTOR, ".leaflet-control-attribution")\
            .text
        assert csp_violations(d) == []
    finally:
        d.quit()
        console.stop()
        tiles.stop()


def test_language_per_operator(world):
    console, d = world
    d.find_element(By.CSS_SELECTOR, "#lang option[value='id']").click()
    wait_for(lambda: js(d, "return document.querySelector('[data-i18n=queue]').textContent")
             == "Antrean alarm", 5, "Bahasa Indonesia")
    assert "PANIK" in lines(d)[0]["text"]
    d.refresh()
    wait_for(lambda: js(d, "return document.body.dataset.ready") == "1", 10, "reloaded")
    assert js(d, "return document.querySelector('[data-i18n=queue]').textContent") \
        == "Antrean alarm"  # kept on the server, per operator
    d.find_element(By.ID, "start-shift").click()
    click(d, "#queue .line.prio-1")
    wait_for(lambda: "Kirim unit polisi terdekat" in d.find_element(By.ID, "steps").text, 5,
             "the plan in Bahasa Indonesia")
    shot(d, "bahasa")
    assert console.query("SELECT lang FROM users WHERE username = 'ani'") == [("id",)]
    assert console.query("SELECT lang FROM users WHERE username = 'budi'") == [("en",)]


def test_admin_page(world):
    console, d = world
    d.switch_to.new_window("window")
    login(d, console.base.replace("127.0.0.1", "localhost"), "admin")
    d.get(console.base.replace("127.0.0.1", "localhost") + "/admin")
    wait_for(lambda: js(d, "return document.body.dataset.ready") == "1", 10, "admin page")
    users = d.find_element(By.ID, "users").text
    assert "ani" in users and "supervisor" in users
    assert "accepted" in d.find_element(By.ID, "receipts").text
    assert "police unit" in d.find_element(By.ID, "plans").text
    d.find_element(By.ID, "new-username").send_keys("rina")
    d.find_element(By.ID, "new-name").send_keys("Rina Wati")
    d.find_element(By.ID, "new-password").send_keys("a long enough pw")
    d.find_element(By.CSS_SELECTOR, "#user-form button").click()
    wait_for(lambda: "rina" in d.find_element(By.ID, "users").text, 5, "new account listed")
    shot(d, "admin")
    assert console.query("SELECT role FROM users WHERE username = 'rina'") == [("operator",)]
    assert csp_violations(d) == []
