"""The simulated board's USB console (panicsim.console): the raw REPL the installer tools
drive really executes what they send against the board, and Ctrl-C / Ctrl-D really stop
and reload the firmware."""

from __future__ import annotations

import time

import pytest
import serial

from panicbutton import nvmstore
from panicsim import Air, SimButton, VirtualClock
from panictool.transport import DeviceError
from panictool.transport_serial import SerialTransport

# A board stopped (power cut, Ctrl-C, stop()) as the radio library enters asyncio.run()
# leaves that coroutine unstarted, as a reset would; Python warns when it is collected.
pytestmark = pytest.mark.filterwarnings(
    "ignore:coroutine 'RFMSPI.asyncio_.*' was never awaited:RuntimeWarning")
KEY = bytes(range(16))
DEV = 0x0BADCAFE


@pytest.fixture
def btn(tmp_path):
    drive = tmp_path / "CIRCUITPY"
    drive.mkdir()
    b = SimButton(DEV, KEY, air=Air(VirtualClock()), drive=drive)
    b.flash()
    b.usb_console(link_dir=tmp_path)
    b.start()
    assert b.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 15)
    try:
        yield b
    finally:
        b.stop()


def _until(port: serial.Serial, marker: bytes, timeout: float = 5.0) -> bytes:
    data = b""
    end = time.monotonic() + timeout
    while marker not in data and time.monotonic() < end:
        data += port.read(4096)
    assert marker in data, data
    return data


def test_code_py_output_ctrl_c_and_friendly_repl(btn):
    with serial.Serial(btn.usb.path, timeout=0.05) as port:
        port.write(b"\x03")
        seen = _until(port, b"Press any key to enter the REPL")
        assert b"KeyboardInterrupt" in seen and not btn.running  # code.py really stopped
        port.write(b"\r")
        _until(port, b">>> ")
        port.write(b"x = 6 * 7\r")
        _until(port, b">>> ")
        port.write(b"x\r")
        assert b"42\r\n>>> " in _until(port, b"42")
        port.write(b"for i in range(2):\r")
        _until(port, b"... ")
        port.write(b"  print('line', i)\r\r")
        seen = _until(port, b"line 1")
        assert b"line 0\r\nline 1" in seen
        port.write(b"import microcontroller\rlen(microcontroller.nvm)\r")
        assert b"4096" in _until(port, b"4096")
        port.write(b"1/0\r")
        assert b"ZeroDivisionError" in _until(port, b"ZeroDivisionError")
        n = len(btn.boot_reports())
        port.write(b"\x04")  # Ctrl-D at the prompt: soft reload runs code.py again
        _until(port, b"PANIC-BUTTON {")
    # One soft reload (later runs, if any, are wakes from deep sleep: time is virtual).
    assert [why for _, why in btn.boot_log].count("SOFTWARE") == 1
    after = btn.boot_reports()[n:]
    assert after[0]["wake"] is None and all(r["wake"] for r in after[1:])
    assert after[0]["cold_boot"] is False  # sleep memory survived the reload
    assert btn.cold_boots == 1 and btn.running


@pytest.mark.parametrize("paste", [True, False])
def test_raw_repl_runs_code_and_files_stay_on_the_drive(btn, paste):
    body = bytes(range(256)) * 9  # several raw-paste windows and file chunks
    with SerialTransport(btn.usb.path, use_raw_paste=paste) as t:
        t.enter_raw_repl()
        assert t.board_info()["board_id"] == btn.board_id
        assert t.exec("print(sum(range(10)))\n" + "#" * 3000 + "\n").strip() == "45"
        assert t.raw_paste_used is paste
        t.mkdir("/lib")
        t.write("/lib/blob.bin", body)
        assert t.read("/lib/blob.bin") == body and t.stat_size("/lib/blob.bin") == len(body)
        assert [e.name for e in t.ls("/")] == ["boot.py", "code.py", "hal_board.py", "lib",
                                               "panictool.json"]  # as flashed
        t.exec("_kept = 5\n")
        assert t.eval("_kept") == 5  # globals live for the REPL session
        with pytest.raises(DeviceError) as e:
            t.exec("open('../outside.txt', 'w')\n")
        assert e.value.errno == 2
        t.remove("/lib/blob.bin")
        t.soft_reboot(run_code=False)  # Ctrl-D in the raw REPL: fresh globals, no code.py
        with pytest.raises(DeviceError, match="NameError"):
            t.exec("print(_kept)\n")
    assert (btn.drive / "lib").is_dir() and not (btn.drive / "lib" / "blob.bin").exists()
    assert not (btn.drive.parent / "outside.txt").exists()


def test_nvm_request_through_the_repl_sends_one_test_per_request(btn):
    with SerialTransport(btn.usb.path) as t:
        t.enter_raw_repl()
        t.nvm_write(nvmstore.REMOTE_TEST_AT, nvmstore.remote_test_record(0x77))
        start = len(btn.console)
        t.soft_reboot(run_code=True)
        assert btn.wait_for_line(lambda ln: "press: test" in ln, 10, start)
        assert btn.boot_reports()[-1]["remote_test"] == 0x77
        assert nvmstore.read_remote_test(btn.nvm.data) is None
        t.enter_raw_repl()  # interrupts code.py again
        start = len(btn.console)
        t.soft_reboot(run_code=True)
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 10, start)
    assert btn.boot_reports()[-1]["remote_test"] is None
    assert len(btn.lines("press: test")) == 1
