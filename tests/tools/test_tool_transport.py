"""The raw-REPL transport against a real MicroPython VM on a pseudo-terminal."""

from __future__ import annotations

import hashlib
import os

import pytest
import serial

from panicbutton import nvmstore
from panictool.transport import DeviceError, TransportError
from panictool.transport_serial import SerialTransport


def test_write_hash_read_back(mpboard):
    data = os.urandom(3000) + b"\r\n\x00\x03\x04 tail"
    with SerialTransport(mpboard.port) as t:
        t.makedirs("lib/panicproto")
        t.write("lib/panicproto/blob.bin", data)
        assert t.raw_paste_used  # the unix port offers raw-paste
        assert t.sha256("lib/panicproto/blob.bin") == hashlib.sha256(data).hexdigest()
        assert t.read("lib/panicproto/blob.bin") == data
        assert t.stat_size("lib/panicproto/blob.bin") == len(data)
        names = {e.name: e for e in t.ls("lib")}
        assert names["panicproto"].is_dir
        assert t.sha256("nope.py") is None
        t.remove("lib/panicproto/blob.bin")
        assert t.stat_size("lib/panicproto/blob.bin") is None
    assert (mpboard.fs / "lib" / "panicproto").is_dir()


def test_plain_raw_mode_without_paste(mpboard):
    with SerialTransport(mpboard.port, use_raw_paste=False) as t:
        t.write("a.txt", b"x" * 700)
        assert not t.raw_paste_used
        assert (mpboard.fs / "a.txt").read_bytes() == b"x" * 700
        assert t.eval("1 + 2") == 3


def test_device_errors_are_reported(mpboard):
    with SerialTransport(mpboard.port) as t:
        with pytest.raises(DeviceError) as e:
            t.read("missing.txt")
        assert e.value.errno == 2
        with pytest.raises(DeviceError, match="ZeroDivisionError"):
            t.exec("1/0")
        assert t.eval("'still here'") == "still here"  # the session survives a traceback


def test_key_into_nvm(mpboard):
    key = bytes(range(16))
    rec = nvmstore.identity_record(0x12345678, key)
    with SerialTransport(mpboard.port) as t:
        info = t.board_info()
        assert info["board_id"] == "adafruit_feather_rp2040_rfm"
        assert info["nvm_size"] == 8192
        assert t.nvm_write(0, rec) is True
        assert t.nvm_write(0, rec) is False  # already there: no second flash write
        assert t.nvm_read(0, len(rec)) == rec
    assert mpboard.nvm()[:len(rec)] == rec
    assert nvmstore.read_identity(bytearray(mpboard.nvm())) == (0x12345678, key)


def test_reopen_interrupts_a_running_program(mpboard):
    with SerialTransport(mpboard.port) as t:
        t.exec("pass")
    # A program that never ends, as code.py does on a button.
    with SerialTransport(mpboard.port) as t:
        t.enter_raw_repl()
        t.write_console(b"import time\nwhile True:\n time.sleep(0.01)\n\x04")
        t.in_raw = True
        assert t.read_until(b"OK", 2.0).endswith(b"OK")
        t.in_raw = False  # force the full interrupt path
        assert t.eval("40 + 2") == 42


def test_missing_port_and_busy_port(mpboard, tmp_path):
    with pytest.raises(TransportError) as e:
        SerialTransport(str(tmp_path / "ttyNOPE"))
    assert "no serial port" in str(e.value)
    with SerialTransport(mpboard.port):
        with pytest.raises(TransportError) as e:
            SerialTransport(mpboard.port)
        assert "busy" in str(e.value) and "close it" in e.value.hint


def test_board_that_does_not_answer(tmp_path):
    m, s = os.openpty()
    try:
        path = os.ttyname(s)
        with pytest.raises(TransportError) as e:
            with SerialTransport(path, answer_timeout=0.6) as t:
                t.enter_raw_repl()
        assert "does not answer" in str(e.value) or "raw REPL" in str(e.value)
        assert "CircuitPython" in e.value.hint
    finally:
        os.close(m)
        os.close(s)


def test_permission_denied_suggests_dialout(tmp_path, monkeypatch):
    def deny(*a, **kw):
        raise serial.SerialException(13, "could not open port /dev/ttyACM0: [Errno 13] "
                                         "Permission denied: '/dev/ttyACM0'")

    monkeypatch.setattr(serial, "Serial", deny)
    with pytest.raises(TransportError) as e:
        SerialTransport("/dev/ttyACM0")
    assert "dialout" in e.value.hint
