"""`panictool rekey` restarts the button's counter with the new key (issue 11 point 8).

On a real MicroPython VM behind a pty (tests/tools/mpboard.py) holding the firmware's own
modules: the button runs in its last epoch 0xFFFF (its NVM epoch record written by the
firmware's EpochStore, its sleep-memory record by its Counter), the gateway has heard it
there, `panictool rekey --gateway-db` gives it a new key; the firmware's Counter, booting on
that NVM with the same sleep memory, then makes a low counter, the firmware's encoder signs
the frame with the key now in NVM, and the gateway's pipeline on that DB stores it and
answers with an ACK the firmware verifies.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from drivefakes import make_circuitpy
from typer.testing import CliRunner

from panicbutton import nvmstore
from panicgw import pipeline as pl
from panicgw.store import Store
from panicproto import frames
from panictool import identity
from panictool.cli import app
from panictool.transport_serial import SerialTransport

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
SITE = ["--site-name", "Toko Maju", "--kind", "shop", "--address", "Jl. Merdeka 12, Bandung",
        "--lat", "-6.9147", "--lon", "107.6098"]

# Runs on the board: the firmware's identity reader, counter (with the sleep memory it is
# given, as alarm.sleep_memory survives a soft reboot) and frame encoder.
BUTTON = """
import sys, binascii, microcontroller
if 'lib' not in sys.path:
    sys.path.append('lib')
from panicbutton.nvmstore import read_identity, EpochStore
from panicbutton.counter import Counter
from panicproto import frames
mem = bytearray(binascii.unhexlify('{mem}'))
dev, key = read_identity(microcontroller.nvm)
c = Counter(EpochStore(microcontroller.nvm), mem)
c.boot()
out = []
for kind in {kinds}:
    n = c.next()
    up = frames.encode_uplink(key, frames.Uplink(kind, dev, n))
    out.append('%d:%s' % (n, binascii.hexlify(up).decode()))
print(c.epoch, int(c.cold), binascii.hexlify(mem).decode(), ','.join(out))
"""

CHECK_ACK = """
import sys, binascii, microcontroller
if 'lib' not in sys.path:
    sys.path.append('lib')
from panicbutton.nvmstore import read_identity
from panicproto import frames
dev, key = read_identity(microcontroller.nvm)
d = frames.decode_downlink(binascii.unhexlify('{down}'), key)
print(d.kind, d.device_id, d.counter, d.status)
"""


def _button(port: str, mem: bytes, kinds: list[int]) -> tuple[int, bool, bytes,
                                                                list[tuple[int, bytes]]]:
    """Boot the firmware's counter on the board and make one frame per kind: (epoch, cold
    boot, sleep memory after, [(counter, frame)])."""
    with SerialTransport(port) as t:
        t.enter_raw_repl()
        out = t.exec(BUTTON.format(mem=mem.hex(), kinds=kinds), timeout=20).split()
    made = [(int(a), bytes.fromhex(b)) for a, b in (x.split(":") for x in out[3].split(","))]
    return int(out[0]), out[1] == "1", bytes.fromhex(out[2]), made


def test_rekey_restarts_the_counter_at_the_top_and_the_next_frames_are_accepted(
        mpboard, tmp_path):
    db = tmp_path / "gw.db"
    Store(db).close()  # as the daemon creates it
    cp = make_circuitpy(mpboard.fs)
    for pkg in ("panicbutton", "panicproto"):  # the firmware's modules, as flash puts them
        shutil.copytree(ROOT / "firmware" / "lib" / pkg, cp / "lib" / pkg,
                        ignore=shutil.ignore_patterns("__pycache__"))
    r = runner.invoke(app, ["provision", *SITE, "--gateway-db", str(db), "--drive", str(cp),
                            "--port", mpboard.port, "--label-dir", str(tmp_path), "--no-qr",
                            "--json"])
    assert r.exit_code == 0, r.output
    dev, old_key = nvmstore.read_identity(bytearray(mpboard.nvm()))

    # The button's NVM says epoch 0xFFFE (the firmware's own record writer), so its boot
    # takes the last epoch, 0xFFFF; the gateway hears it there.
    with SerialTransport(mpboard.port) as t:
        t.enter_raw_repl()
        t.exec("import sys\nsys.path.append('lib')\nimport microcontroller\n"
               "from panicbutton.nvmstore import EpochStore\n"
               "EpochStore(microcontroller.nvm).write(0xFFFE)\n")
    epoch, cold, mem, made = _button(mpboard.port, bytes(16),
                                     [frames.HEARTBEAT, frames.HEARTBEAT])
    assert (epoch, cold) == (0xFFFF, True)
    assert [n for n, _ in made] == [0xFFFF0000, 0xFFFF0001]
    s = Store(db, create=False)
    try:
        p = pl.Pipeline(s, "gw-test")
        assert [p.process(pl.Frame(f, "lora")).status for _, f in made] == [pl.STORED] * 2
        assert s.device_state(dev).replay_highest == 0xFFFF0001
    finally:
        s.close()
    # a soft reboot keeps sleep memory: it would go on at the top
    assert _button(mpboard.port, mem, [frames.HEARTBEAT])[:2] == (0xFFFF, False)

    r = runner.invoke(app, ["rekey", "--gateway-db", str(db), "--port", mpboard.port,
                            "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["counter_restarted"] is True and doc["counter_epoch_before"] == 0xFFFF
    assert doc["key_gen"] == 2
    nvm = bytearray(mpboard.nvm())
    new_dev, new_key = nvmstore.read_identity(nvm)
    assert new_dev == dev and new_key != old_key
    assert nvmstore.EpochStore(nvm).read() == 0
    assert new_key.hex() not in r.output

    # The button comes back with the sleep memory it had: the counter starts over anyway
    # (epoch 1, a cold start: the sleep record is not resumed), signed with the new key.
    epoch, cold, _, made = _button(mpboard.port, mem, [frames.ALARM])
    assert (epoch, cold) == (1, True)
    [(counter, frame)] = made
    assert counter == frames.make_counter(1, 0)
    s = Store(db, create=False)
    try:
        assert s.get_device(dev).key == new_key and s.device_state(dev).replay_highest == -1
        out = pl.Pipeline(s, "gw-test").process(pl.Frame(frame, "lora"))
        assert out.status == pl.STORED, out
        assert out.incident_id == f"{dev:08X}-{counter:08X}-panic-g2"
        assert s.outbox_rows()[-1]["payload"]["event"] == "panic"
    finally:
        s.close()
    # the firmware takes the gateway's ACK: both ends agree on the key
    with SerialTransport(mpboard.port) as t:
        t.enter_raw_repl()
        got = t.exec(CHECK_ACK.format(down=out.downlink.hex())).split()
    assert [int(x) for x in got] == [frames.ACK, dev, counter, frames.STORED]


def test_a_board_that_already_has_the_key_keeps_its_counter(mpboard, tmp_path):
    """Running `--use-key` twice must not restart the counter a second time: the gateway
    may already hold frames of the new key, whose counters would then come again."""
    db = tmp_path / "gw.db"
    Store(db).close()
    cp = make_circuitpy(mpboard.fs)
    r = runner.invoke(app, ["provision", *SITE, "--gateway-db", str(db), "--drive", str(cp),
                            "--port", mpboard.port, "--label-dir", str(tmp_path), "--no-qr"])
    assert r.exit_code == 0, r.output
    dev, _ = nvmstore.read_identity(bytearray(mpboard.nvm()))
    kf = tmp_path / "k.key"
    kf.write_text(json.dumps({"device_id": dev, "key": "5a" * 16, "key_gen": 2}))
    r = runner.invoke(app, ["rekey", "--use-key", str(kf), "--port", mpboard.port])
    assert r.exit_code == 0 and "counter restarted" in r.output, r.output
    # the button runs on: its epoch moves on (the firmware's writer, as at a cold boot)
    with SerialTransport(mpboard.port) as t:
        t.enter_raw_repl()
        t.nvm_write(nvmstore.SLOT_A, identity.epoch_record(3)[:nvmstore.SLOT_LEN])
    before = mpboard.nvm()
    r = runner.invoke(app, ["rekey", "--use-key", str(kf), "--port", mpboard.port, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["changed"] is False and doc["counter_restarted"] is False
    assert doc["counter_epoch_before"] == 3 and mpboard.nvm() == before
