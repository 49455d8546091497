"""The MicroPython board in hardware mode (tests/tools/mpboard.py) is no more forgiving than
a board: it runs only the flashed tree, the real adafruit_rfm drives the SX127x model, and
its packets reach only radios on the chip's frequency, SF and bandwidth.

The flashed button tree (what `panictool flash` writes) with a provisioned NVM and a
settings.toml boots on the VM and deep-sleeps; a person holds the button, which wakes it
(code.py again, `wake` "pin"); the ALARM the library puts on
air is the 19-byte frame, heard by the virtual bridge on the button's channel and not by
one on another frequency. A tree that lacks a module fails to boot (no host fallback).
"""

from __future__ import annotations

import time
from pathlib import Path

import serial
from mpboard import MpBoard

from panicbutton.nvmstore import identity_record
from panicimage import manifest
from panicproto import frames, link
from panicsim import Air, SimClock, start_virtual_bridge

DEV, KEY = 0x0A1B2C3D, bytes(range(16))
SETTINGS = 'PB_REGION = "AS923-2"\nPB_FREQUENCY_MHZ = "921.4"\nPB_SF = 9\n'


def _board(tmp: Path, air: Air) -> MpBoard:
    b = MpBoard(tmp, air=air, name="vm-button", fs_name="CIRCUITPY")
    manifest.write_tree("button", b.fs)
    (b.fs / "settings.toml").write_text(SETTINGS)
    nvm = bytearray(b.nvm_file.read_bytes())
    nvm[0:26] = identity_record(DEV, KEY)
    b.nvm_file.write_bytes(bytes(nvm))
    return b


def test_the_alarm_on_air_is_the_frame_and_only_its_channel_hears_it(tmp_path: Path) -> None:
    air = Air(SimClock(1.0), seed=4, rssi=-101.0, snr=2.5)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    here = start_virtual_bridge(air, {"PB_FREQUENCY_MHZ": "921.4", "PB_SF": 9}, name="here",
                                link_dir=tmp_path / "a")
    other = start_virtual_bridge(air, {"PB_FREQUENCY_MHZ": "922.0", "PB_SF": 9},
                                 name="other", link_dir=tmp_path / "b")
    offered: list[bytes] = []  # what the air delivered to the 922.0 MHz bridge's radio
    assert other.radio is not None
    real = other.radio.deliver
    other.radio.deliver = lambda tx: (offered.append(tx.data), real(tx))[1]
    board = _board(tmp_path, air).start()
    port = serial.Serial(here.port_path, timeout=0.1)  # the gateway's end of the bridge
    try:
        rep = board.wait_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 15)
        assert rep is not None and '"radio": "ok"' in rep, board.lines()
        # Idle until its first heartbeat, it deep-sleeps (CircuitPython with USB: code.py
        # ends, the alarms wait); the person's press wakes it and code.py runs again.
        assert board.wait_line(lambda ln: ln.startswith("Pretending to deep sleep"), 10)
        start = len(board.lines())
        board.press(2.0)
        assert board.wait_line(lambda ln: ln.startswith("PANIC-BUTTON press: alarm"), 5,
                               start), board.lines()[start:]
        woke = [ln for ln in board.lines()[start:] if ln.startswith("PANIC-BUTTON {")]
        assert woke and '"wake": "pin"' in woke[0], board.lines()[start:]
        # What adafruit_rfm made the chip transmit (radiohead = False): 19-byte frames.
        sent = [p for _t, _sf, p in board.link.sent]
        assert sent and all(len(p) == frames.UPLINK_LEN for p in sent), sent
        ups = [frames.decode_uplink(p, KEY) for p in sent]
        assert frames.ALARM in [u.kind for u in ups] and {u.device_id for u in ups} == {DEV}
        # The bridge on the button's channel received it whole, with the air's RSSI/SNR ...
        dec, rx = link.Decoder(), None
        end = time.monotonic() + 10
        while rx is None and time.monotonic() < end:
            for m in dec.feed(port.read(512)):
                if m.kind == link.RX and link.parse_rx(m.payload)[0] in sent:
                    rx = link.parse_rx(m.payload)
        assert rx is not None, "the bridge on 921.4 MHz reported no RX of the button's frame"
        assert rx[1:] == (-101, 2.5)
        # ... and the air offered nothing to the bridge on 922.0 MHz.
        assert not offered, offered
    finally:
        port.close()
        board.stop()
        here.stop()
        other.stop()


def test_a_tree_without_a_module_does_not_boot(tmp_path: Path) -> None:
    air = Air(SimClock(1.0), seed=5)
    board = _board(tmp_path, air)
    for f in (board.fs / "lib" / "panicbutton").glob("classifier.*"):
        f.unlink()  # what a manifest that forgot a file would leave on CIRCUITPY
    board.start()
    try:
        line = board.wait_line(lambda ln: "ImportError" in ln, 15)
        assert line is not None and "classifier" in line, board.lines()
        assert not any(ln.startswith("PANIC-BUTTON {") for ln in board.lines())
    finally:
        board.stop()
