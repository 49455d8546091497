"""The installer's day as docs/installing.md writes it, executed command for command.

The commands are read from the doc's "The installer's day" section (not copied here), so
the doc and this journey cannot drift apart, and run through the real CLIs in the order the
doc gives them, with no option added:

    laptop:   panictool flash --uf2 <the doc's .uf2>   (blank board in its bootloader)
    laptop:   panictool provision ... --export today.json
    gateway:  sudo -u panicgw panicgw devices import - < today.json
              (default config: PANICGW_CONFIG; the file on stdin, read by the admin's shell)
    laptop:   panictool verify

on the simulated board and on the MicroPython VM (journeykit: the world). The output the
doc quotes for each command is what the command prints, up to the values of this run (ids,
counters, sizes, paths, signal levels). The day ends when the gateway holds the TEST as
heard on LoRa, dispatch has received it as a manual test, and the button still acts on a
press. Nothing is skipped or expected to fail: each step passes as the doc writes it, or
the test fails.
"""

from __future__ import annotations

import re
import shlex

import pytest
from drivefakes import uf2_image
from journeykit import (
    ROOT,
    RSSI,
    SNR,
    Board,
    day_commands,
    doc_command,
    doc_section,
    run_as,
    wait_for,
)

from panicgw import registry
from panicproto import frames

RP2040 = 0xE48BFF56  # the UF2 family id of the doc's Feather RP2040 image


def test_the_day_is_three_commands_on_the_laptop():
    cmds = day_commands()
    argvs = [run_as(c)[1] for c in cmds]  # the gateway's as its user (sudo -u), from stdin
    words = [" ".join(a[:2 if a[0] == "panictool" else 3]) for a in argvs]
    assert words == ["panictool flash", "panictool provision", "panicgw devices import",
                     "panictool verify"], cmds
    assert sum(w.startswith("panictool") for w in words) == 3
    # The import runs as the user owning the gateway's config and DB, the file on stdin.
    assert run_as(cmds[2])[0] == "panicgw" and run_as(cmds[2])[2] == "today.json", cmds[2]
    text = (ROOT / "docs" / "installing.md").read_text()
    assert "From a blank board to a verified button: 3 commands on your laptop" in text


def quoted_output(section: str, command: str) -> list[str]:
    """The output lines the doc's ``section`` shows right after ``$ command``."""
    lines = doc_section(section).splitlines()
    out: list[str] = []
    for i, ln in enumerate(lines):
        if ln.startswith("$ ") and command.startswith(ln[2:].rstrip("\\").strip()):
            j = i + 1
            while lines[j - 1].rstrip().endswith("\\"):
                j += 1
            while j < len(lines) and not lines[j].startswith(("$ ", "```")):
                out.append(lines[j])
                j += 1
            return out
    raise AssertionError(f"no `$ {command}` in {section!r}")


def shape(line: str) -> str:
    """A quoted or printed line with this run's values taken out: serial ports, the
    directories of paths (the drive's name stays), ids, fingerprints, numbers."""
    line = re.sub(r"/dev/ttyACM\d+|/dev/pts/\d+|/\S*/ttyCONSOLE-[\w-]+", "<port>", line)
    line = re.sub(r"(?:/[^\s/:,()]+)+/", "<dir>/", line)
    line = re.sub(r"(?<![0-9A-Za-z])(0x)?[0-9A-F]{8}(?![0-9A-Za-z])", "<id>", line)
    line = re.sub(r"(?<![0-9A-Za-z])[0-9a-f]{16}(?![0-9A-Za-z])", "<fp>", line)
    return re.sub(r"-?\d+(\.\d+)?", "<n>", line)


def assert_output_as_quoted(section: str, command: str, output: str) -> None:
    """Every line the doc quotes appears in the output, in the doc's order."""
    got = [shape(ln) for ln in output.splitlines()]
    at = 0
    for want in quoted_output(section, command):
        if want.strip() == "(QR code)":  # the doc's stand-in for the terminal QR code
            continue
        s = shape(want)
        assert s in got[at:], (f"docs/installing.md quotes {want!r} for `{command}`; "
                               f"the command printed:\n{output}")
        at = got.index(s, at) + 1


@pytest.mark.parametrize("kind", ["sim", "micropython"])
def test_installer_day_as_the_doc_writes_it(laptop, gateway, air, tmp_path, kind):
    gw = gateway
    section = "The installer's day\n"
    flash, provision, import_, verify = day_commands()
    uf2_name = shlex.split(flash)[shlex.split(flash).index("--uf2") + 1]
    (laptop.home / uf2_name).write_bytes(uf2_image(RP2040))
    board = Board(kind, tmp_path, laptop, air)
    try:
        # 1. flash: CircuitPython and the firmware in one run, verified on the board.
        r = laptop.run(flash, gw)
        assert board.error is None, board.error
        assert r.exit_code == 0, r.output
        assert_output_as_quoted(section, flash, r.output)
        assert board.cp is not None and (board.cp / "code.py").read_text() == \
            (ROOT / "firmware" / "button" / "code.py").read_text()

        # 2. provision: identity into NVM, settings onto CIRCUITPY, the site into today.json.
        r = laptop.run(provision, gw)
        assert r.exit_code == 0, r.output
        assert_output_as_quoted(section, provision, r.output)
        export = laptop.home / "today.json"
        recs = registry.read_export(export)
        assert len(recs) == 1 and recs[0].site.name == "Toko Maju"
        dev = recs[0].device_id
        assert f"next: on the gateway `{import_}`, then here `{verify}`" in r.output
        assert (laptop.home / f"panic-button-{dev:08X}.svg").is_file()

        # 3. On the gateway: the import lands in the DB the running daemon uses (found
        # from the default config), and the daemon picks the device up.
        r = laptop.run(import_, gw)
        assert r.exit_code == 0, r.output
        assert_output_as_quoted(section, import_, r.output)
        assert gw.knows(dev)
        assert not list(laptop.home.glob("**/*.db")), "the import made a second registry"
        wait_for(lambda: gw.status().get("devices") == 1, 15, "the daemon to load the device")

        # 4. verify: nobody touches the button; the signed ACK is the proof.
        mark = len(board.console())
        r = laptop.run(verify, gw)
        out = r.output
        assert r.exit_code == 0, out + "\n--- board:\n" + "\n".join(board.console()[mark:])
        assert_output_as_quoted(section, verify, out)
        counter = int(re.search(r"PASS TEST sent: counter (\d+)", out).group(1))
        ack = board.wait_line(lambda ln: ln.startswith(
            f"PANIC-BUTTON ack: test counter={counter} "), 1, mark)
        assert ack is not None and re.fullmatch(
            rf"PANIC-BUTTON ack: test counter={counter} status=1 via lora rssi=-?\d+ "
            r"snr=-?\d+\.\d sf=9 down=[0-9a-f]{36}", ack), ack
        # The ACK verify checked was on air: the gateway's bridge sent exactly that downlink.
        down = bytes.fromhex(ack.rsplit("down=", 1)[1])
        assert down in [p for _t, who, p, _sf in air.stats.log if who == gw.bridge.name]

        # 5. The gateway stored the TEST (heard on LoRa, the air's RSSI/SNR): the very
        # frame the board's radio put on air ...
        heard = wait_for(lambda: gw.stored(dev, counter, "test"), 10, "the TEST in the DB")
        assert heard == [("lora", RSSI, SNR)], heard
        key = recs[0].key
        sent = [frames.decode_uplink(p, key) for p in board.on_air()
                if len(p) == frames.UPLINK_LEN]
        assert (frames.TEST, counter) in [(u.kind, u.counter) for u in sent]
        # ... and dispatch received it as a manual test, marked as one.
        got = wait_for(lambda: gw.dispatched(dev, "test"), 20, "the TEST at dispatch")
        body = got[0]["body"]
        assert got[0]["status"] == 200 and got[0]["verdict"] == "accepted", got[0]
        assert body["contact_id"]["code"] == 601 and body["test"] is True, body
        assert body["site"]["name"] == "Toko Maju" and body["device"]["label"] == "counter"

        # 6. The button is left running its firmware: a person's TEST press is acted on.
        start = len(board.console())
        board.press_test()
        assert board.wait_line(lambda ln: ln.startswith("PANIC-BUTTON press: test"), 10,
                               start), board.console()[start:]
    finally:
        board.stop()


def test_on_the_gateway_itself_three_commands_in_all(laptop, gateway, air, tmp_path):
    """The doc's other way: the button on the Pi's USB. flash as on the laptop, then
    `provision ... --config /etc/panicgw/gateway.toml` registers straight into the DB that
    the running `panicgw run --config` uses (no import), and `verify --config` passes with
    the gateway's view; a plain `panictool verify` there finds the same DB by itself."""
    gw = gateway
    flash = day_commands()[0]
    provision = doc_command("2. Provision", "panictool provision")
    verify = doc_command("3. Verify", "panictool verify --config")
    assert "--config /etc/panicgw/gateway.toml" in provision
    uf2_name = shlex.split(flash)[shlex.split(flash).index("--uf2") + 1]
    (laptop.home / uf2_name).write_bytes(uf2_image(RP2040))
    board = Board("sim", tmp_path, laptop, air)
    try:
        r = laptop.run(flash, gw, on_gateway=True)
        assert r.exit_code == 0, r.output
        r = laptop.run(provision, gw, on_gateway=True)
        assert r.exit_code == 0, r.output
        m = re.search(r"device 0x([0-9A-F]{8}) provisioned", r.output)
        assert m and f"registered in the gateway DB {gw.db}" in r.output, r.output
        dev = int(m.group(1), 16)
        assert gw.knows(dev)
        assert "next: panictool verify  (" in r.output  # nothing to import
        assert not list(tmp_path.glob("**/panicgw-data"))  # no second, unread registry made
        r = laptop.run(verify, gw, on_gateway=True)
        out = r.output
        assert r.exit_code == 0, out
        assert_output_as_quoted("3. Verify", verify, out)
        # Both directions read alike, whichever source reported them (the DB has floats).
        assert out.count(f"RSSI {RSSI:g} dBm, SNR {SNR:.1f} dB at SF9: 9.5 dB above") == 2
        counter = int(re.search(r"TEST sent: counter (\d+)", out).group(1))
        assert gw.stored(dev, counter, "test") == [("lora", RSSI, SNR)]
        r = laptop.run("panictool verify", gw, on_gateway=True)
        assert r.exit_code == 0 and "PASS gateway heard TEST" in r.output, r.output
    finally:
        board.stop()
