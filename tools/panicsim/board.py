"""A simulated CircuitPython board that runs a flashed firmware tree's real ``code.py``.

The board runs exactly the files ``panictool flash`` writes to CIRCUITPY
(``panictool.manifest``): from ``drive`` when it holds a ``code.py`` (flashed by the
tool), else from a private copy of the manifest's tree. Imports resolve as on a board
(panicsim.loader): the board's built-ins, then ``/`` and ``/lib`` of that tree, and
nothing of the host's, so a module missing from the manifest raises ImportError here too.

Built-ins are per board and per run: fake hardware (board, digitalio, keypad,
microcontroller, alarm, watchdog, usb_cdc, analogio, busio; wifi, socketpool and ssl on
Wi-Fi boards) and CircuitPython-shaped core modules (time on the simulated clock, os,
sys with ``implementation.name == "circuitpython"``, hashlib with only ``new``, gc,
micropython, supervisor, select with ``ipoll``, and the host's json, struct, math, random,
errno, binascii, collections, re, io, array, traceback). The RFM95 is a register-level
SX127x model on the SPI bus (panicsim.radio), driven by the real ``adafruit_rfm`` library.

Deep sleep ends code.py, waits for the alarms and runs code.py again with sleep memory
kept; a power cut stops it and loses RAM, sleep memory and the radio's registers; NVM
survives both. Several boards run side by side in one process, each in its own thread.

``drive`` is the board's CIRCUITPY directory: settings.toml is read from it at every boot
(as CircuitPython's ``os.getenv`` does), so a tool that rewrites it takes effect on reload.
``usb_console()`` adds the USB serial console (panicsim.console) with a raw REPL.
"""

import atexit
import binascii
import collections
import errno
import hashlib as _hashlib
import io
import json
import math
import os as _os
import random
import re
import select as _select
import shutil
import socket as _socket
import ssl as _ssl
import struct
import sys as _sys
import tempfile
import threading
import tomllib
import traceback
import types
from pathlib import Path

from panicsim.clock import Halted, SimClock
from panicsim.loader import ModuleSpace
from panicsim.radio import SimRadio
from panicsim.sx127x import SPIBus

ROOT = Path(__file__).resolve().parents[2]
CIRCUITPY_VERSION = (9, 2, 1)
# Host modules a CircuitPython board has as built-ins with the same API (for what the
# firmware and its libraries use).
HOST_BUILTINS = {"json": json, "struct": struct, "math": math, "random": random,
                 "errno": errno, "binascii": binascii, "collections": collections, "re": re,
                 "io": io, "array": __import__("array"), "traceback": traceback}

_TREES: dict[tuple[str, str], Path] = {}
_TREES_LOCK = threading.Lock()


def flashed_tree(role: str) -> Path:
    """A directory holding exactly what ``panictool flash`` writes for ``role`` (built
    once per process from panictool.manifest, rebuilt when a firmware file changes)."""
    from panictool import manifest

    entries = manifest.build(role)
    digest = _hashlib.sha256("".join(e.dest + e.sha256 for e in entries).encode()).hexdigest()
    with _TREES_LOCK:
        tree = _TREES.get((role, digest))
        if tree is None:
            tree = Path(tempfile.mkdtemp(prefix=f"panicsim-{role}-"))
            atexit.register(shutil.rmtree, tree, True)
            manifest.write_tree(role, tree, entries)
            _TREES[(role, digest)] = tree
    return tree


class DeepSleepRequest(BaseException):
    def __init__(self, alarms) -> None:
        super().__init__("deep sleep")
        self.alarms = alarms


class SimNVM:
    """``microcontroller.nvm``: a bytearray that counts writes and can fail mid-write."""

    def __init__(self, size: int) -> None:
        self.data = bytearray(b"\xff" * size)
        self.writes = 0  # slice/item assignments (flash write operations)
        self.cut_after_bytes: int | None = None
        self.on_cut = None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]

    def __setitem__(self, sl, value) -> None:
        if isinstance(sl, int):
            sl, value = slice(sl, sl + 1), bytes((value,))
        start = sl.start or 0
        value = bytes(value)
        self.writes += 1
        for i, b in enumerate(value):
            if self.cut_after_bytes is not None:
                if self.cut_after_bytes <= 0:
                    self.cut_after_bytes = None
                    if self.on_cut:
                        self.on_cut()
                    raise Halted()
                self.cut_after_bytes -= 1
            self.data[start + i] = b


class Pin:
    def __init__(self, board: "SimBoard", name: str) -> None:
        self.board = board
        self.name = name
        self.level = True  # pulled up, idle
        self.output = None  # last value written by firmware
        self.changes: list = []  # (time, level) for inputs driven by the simulator
        self.listeners: list = []  # called with the new level when the firmware drives it

    def set_output(self, level: bool) -> None:
        """The firmware drives the pin (a DigitalInOut output)."""
        if self.output != level:
            self.output = level
            for fn in self.listeners:
                fn(level)

    def drive(self, level: bool) -> None:
        if level != self.level:
            self.level = level
            self.changes.append((self.board.clock.now(), level))

    def __repr__(self) -> str:
        return f"board.{self.name}"


class _Namespace(types.SimpleNamespace):
    pass


class SimBoard:
    """Base class: one board running ``firmware/<kind>/code.py`` in a thread."""

    kind = "button"
    board_id = "adafruit_feather_rp2040_rfm"
    radio_pins: tuple[str, str] | None = ("RFM_CS", "RFM_RST")  # RFM95 CS and RESET
    wifi_capable = False

    def __init__(self, air=None, clock: SimClock | None = None, settings: dict | None = None,
                 settings_toml: str | Path | None = None, name: str = "board",
                 nvm_size: int = 4096, radio_present: bool = True,
                 firmware_dir: Path | None = None, drive: str | Path | None = None) -> None:
        """``firmware_dir``: a flashed tree to run instead of the drive's or the manifest's
        (it must hold code.py and lib/ as ``panictool.manifest.write_tree`` writes them)."""
        self.clock = clock or (air.clock if air is not None else SimClock())
        self.air = air
        self.name = name
        self.settings = dict(settings or {})
        if settings_toml is not None:
            self.settings.update(tomllib.loads(Path(settings_toml).read_text()))
        self.drive = Path(drive) if drive is not None else None
        self._base_settings = dict(self.settings)
        self.usb = None  # panicsim.console.UsbConsole once usb_console() was called
        self.firmware_dir = Path(firmware_dir) if firmware_dir is not None else None
        self.tree: Path | None = None  # the tree the current run of code.py comes from
        self.imported: list[str] = []  # files of the tree the last run imported
        self.boot_error: str | None = None  # traceback of boot.py at the last power-on
        self.nvm = SimNVM(nvm_size)
        self.sleep_memory = bytearray(4096)
        self.radio_present = radio_present
        self.pins: dict[str, Pin] = {}
        self.console: list[str] = []
        self.led_log: list = []  # (time, on)
        self.boots = 0
        self.cold_boots = 0
        self.crash: str | None = None
        self.halt = threading.Event()
        self.wake_alarm = None
        self.reset_reason = "POWER_ON"
        self.spi = SPIBus()
        self.radio: SimRadio | None = None
        if radio_present and self.radio_pins is not None:
            cs, rst = self.radio_pins
            self.radio = SimRadio(air, self, name, cs, rst)
            self.spi.attach(self.radio)
            self.pin(cs).listeners.append(self.radio.cs)
            self.pin(rst).listeners.append(self.radio.rst)
        self.watchdog_resets = 0
        self.battery_mv = 3900
        self._alarm_classes = None
        self._thread: threading.Thread | None = None
        self._lines = threading.Condition()
        self._wd_deadline: float | None = None

    # -- simulator controls -----------------------------------------------------------
    def pin(self, name: str) -> Pin:
        if name not in self.pins:
            self.pins[name] = Pin(self, name)
        return self.pins[name]

    def start(self) -> "SimBoard":
        """Power on (cold boot) and run code.py in a background thread."""
        return self._launch("POWER_ON")

    def reload(self) -> "SimBoard":
        """Soft reload (Ctrl-D on the console): code.py runs again from the top; RAM is
        lost, sleep memory and NVM are kept, so it is not a cold boot."""
        self._halt_thread()
        return self._launch("SOFTWARE")

    def _launch(self, reason: str) -> "SimBoard":
        if self._thread and self._thread.is_alive():
            return self
        self.halt.clear()
        self.wake_alarm = None
        self.reset_reason = reason
        if self.usb is not None:
            self.usb.on_boot()  # before code.py prints its first line
        if self.radio is not None:
            self.radio.attach()
        self._thread = threading.Thread(target=self._run, args=(reason == "POWER_ON",),
                                        name="sim-" + self.name, daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """True while code.py (or a deep sleep between its runs) is in progress."""
        return self._thread is not None and self._thread.is_alive()

    def usb_console(self, link_dir: str | Path | None = None):
        """Give the board its USB serial console on a pty (``.usb.path``); returns it."""
        from panicsim.console import UsbConsole

        if self.usb is None:
            self.usb = UsbConsole(self, str(link_dir) if link_dir else None)
        return self.usb

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the firmware (like holding reset); NVM and sleep memory stay. The USB
        console, if any, is closed too."""
        self._halt_thread(timeout)
        if self.radio is not None:
            self.radio.detach()
        if self.usb is not None:
            self.usb.close()
            self.usb = None

    def _halt_thread(self, timeout: float = 5.0) -> None:
        self.halt.set()
        if self._thread and self._thread.ident is not None:  # a thread not started yet (a
            self._thread.join(timeout)                       # reload racing) sees halt

    def power_cut(self) -> None:
        """Cut power: the firmware stops wherever it is; RAM and sleep memory are lost,
        NVM is kept. ``start()`` powers on again."""
        self._halt_thread()
        self.sleep_memory[:] = bytes(len(self.sleep_memory))
        if self.radio is not None:
            self.radio.power_off()

    def check_alive(self) -> None:
        if self.halt.is_set():
            raise Halted()
        if self._wd_deadline is not None and self.clock.now() > self._wd_deadline:
            self._wd_deadline = None
            raise _WatchdogReset()

    def say(self, text: str) -> None:
        with self._lines:
            self.console.append(text)
            self._lines.notify_all()
        if self.usb is not None:
            self.usb.output(text)

    def wait_for_line(self, predicate, timeout: float = 10.0, start: int = 0) -> str | None:
        """First console line (from index ``start``) matching ``predicate``, waiting up
        to ``timeout`` real seconds."""
        import time as _t

        end = _t.monotonic() + timeout
        with self._lines:
            while True:
                for ln in self.console[start:]:
                    if predicate(ln):
                        return ln
                left = end - _t.monotonic()
                if left <= 0:
                    return None
                self._lines.wait(min(left, 0.1))

    # -- running code.py --------------------------------------------------------------
    def _run(self, cold: bool = True) -> None:
        while not self.halt.is_set():
            self.boots += 1
            if cold:
                self.cold_boots += 1
            self._read_drive_settings()
            try:
                if cold:
                    self._boot_py()
                self._exec(self._modules())
                self.say("Code done running.")
                return
            except DeepSleepRequest as req:
                try:
                    self._sleep_until(req.alarms)
                except Halted:  # stopped or powered off while asleep
                    return
                self.reset_reason = "DEEP_SLEEP_ALARM"
                cold = False
            except _WatchdogReset:
                self.watchdog_resets += 1
                self.say("[sim] watchdog reset")
                self.wake_alarm = None
                self.reset_reason = "WATCHDOG"
                cold = False
            except Halted:
                return
            except BaseException:
                self.crash = traceback.format_exc()
                for ln in self.crash.splitlines():
                    self.say(ln)
                return
            finally:
                self._wd_deadline = None

    def firmware_tree(self) -> Path:
        """The filesystem this board runs from: ``firmware_dir``, else its CIRCUITPY
        ``drive`` (what ``panictool flash`` wrote there; one without code.py runs
        nothing, as a board would), else a private copy of the manifest's tree."""
        if self.firmware_dir is not None:
            return self.firmware_dir
        if self.drive is not None:
            return self.drive
        return flashed_tree(self.kind)

    def flash(self) -> list:
        """Put exactly what ``panictool flash`` writes onto the drive (no serial check);
        for tests whose subject is not flashing. Returns the manifest entries."""
        from panictool import manifest

        if self.drive is None:
            raise ValueError("this board has no CIRCUITPY drive")
        return manifest.write_tree(self.kind, self.drive)

    def module_space(self, modules: dict, root: Path) -> ModuleSpace:
        """A fresh import table over ``root`` with this board's built-ins."""

        def sim_print(*args, sep=" ", end="\n", file=None, **kw):
            text = (" " if sep is None else sep).join(str(a) for a in args)
            if file is not None and file not in (_sys.stdout, modules["sys"].stdout):
                file.write(text + ("\n" if end is None else end))
                return
            for ln in text.splitlines() or [""]:
                self.say(ln)

        space = ModuleSpace(root, modules, sim_print)
        modules["sys"].modules = space.modules
        return space

    def _exec(self, modules: dict) -> None:
        self.tree = root = self.firmware_tree()
        if not (root / "code.py").is_file():
            self.say("[sim] no code.py on CIRCUITPY: nothing to run (`panictool flash` "
                     "installs the firmware)")
            return
        space = self.module_space(modules, root)
        try:
            space.run("code.py")
        finally:
            self.imported = list(space.imported_files)

    def _boot_py(self) -> None:
        """boot.py at power-on, in its own VM as CircuitPython runs it; an error in it is
        reported (CircuitPython writes it to boot_out.txt) and code.py still runs."""
        root = self.firmware_tree()
        if not (root / "boot.py").is_file():
            return
        try:
            self.module_space(self._modules(), root).run("boot.py")
            self.boot_error = None
        except Halted:
            raise
        except Exception:
            self.boot_error = traceback.format_exc()
            for ln in self.boot_error.splitlines():
                self.say("[boot.py] " + ln)

    def _read_drive_settings(self) -> None:
        if self.drive is None:
            return
        f = self.drive / "settings.toml"
        merged = dict(self._base_settings)
        try:
            merged.update(tomllib.loads(f.read_text()))
        except FileNotFoundError:
            pass
        except (OSError, tomllib.TOMLDecodeError) as e:  # CircuitPython skips a bad file
            self.say(f"[sim] settings.toml not read: {e}")
        self.settings = merged

    def _sleep_until(self, alarms) -> None:
        while True:
            self.check_alive()
            for a in alarms:
                if a.fired():
                    self.wake_alarm = a
                    return
            self.clock.sleep(0.02 * self.clock.speed, self.halt)

    # -- fake hardware modules --------------------------------------------------------
    def _modules(self) -> dict:
        return build_modules(self)

    def getenv(self, key: str, default=None):
        v = self.settings.get(key, default)
        return v


class _WatchdogReset(BaseException):
    pass


def build_modules(b: SimBoard) -> dict:
    """Fresh built-in modules (fake hardware and CircuitPython-shaped core modules) for
    one run of code.py, boot.py or a REPL session on board ``b``."""
    clock = b.clock
    host_time = __import__("time")

    # time
    time_mod = _Namespace(
        monotonic=lambda: (b.check_alive(), clock.now())[1],
        monotonic_ns=lambda: int(clock.now() * 1e9),
        time=lambda: int(1_700_000_000 + clock.now()),
        sleep=lambda s: (b.check_alive(), clock.sleep(s, b.halt))[1],
        localtime=host_time.localtime,
        mktime=host_time.mktime,
        struct_time=host_time.struct_time,
    )

    # board
    def spi_bus(*a, **kw) -> SPIBus:
        return b.spi  # board.SPI() is the one bus object, as on CircuitPython

    class _I2C:
        def try_lock(self) -> bool:
            return True

        def unlock(self) -> None:
            pass

        def writeto_then_readfrom(self, addr, out, into) -> None:
            if addr != 0x36:
                raise OSError(19, f"no device at 0x{addr:02x}")
            raw = int(b.battery_mv * 1_000_000 / 78125)
            into[0], into[1] = (raw >> 8) & 0xFF, raw & 0xFF

    class _Board(types.SimpleNamespace):
        def __getattr__(self, name):
            if name.startswith("_") or not (name[0].isupper()):
                raise AttributeError(name)
            return b.pin(name)

    board_mod = _Board(board_id=b.board_id, SPI=spi_bus, I2C=_I2C)

    # digitalio
    class Pull:
        UP = "UP"
        DOWN = "DOWN"

    class Direction:
        INPUT = "INPUT"
        OUTPUT = "OUTPUT"

    class DigitalInOut:
        def __init__(self, pin: Pin) -> None:
            self.pin = pin
            self.direction = Direction.INPUT
            self.pull = None

        def switch_to_input(self, pull=None) -> None:
            self.direction = Direction.INPUT
            self.pull = pull

        def switch_to_output(self, value=False, drive_mode=None) -> None:
            self.direction = Direction.OUTPUT
            self.value = value

        @property
        def value(self) -> bool:
            if self.direction == Direction.OUTPUT:
                return bool(self.pin.output)
            return self.pin.level

        @value.setter
        def value(self, v) -> None:
            v = bool(v)
            if self.pin.output != v and self.pin.name == "LED":
                b.led_log.append((clock.now(), v))
            self.pin.set_output(v)

        def deinit(self) -> None:
            pass

    digitalio_mod = _Namespace(DigitalInOut=DigitalInOut, Pull=Pull, Direction=Direction)

    # keypad
    class Event:
        def __init__(self, key_number=0, pressed=True, timestamp=None) -> None:
            self.key_number = key_number
            self.pressed = pressed
            self.released = not pressed
            self.timestamp = timestamp

    class _Events:
        def __init__(self, keys: "Keys") -> None:
            self.keys = keys

        def _next(self):
            b.check_alive()
            k = self.keys
            for i, pin in enumerate(k.pins):
                ch = pin.changes
                while k.seen[i] < len(ch):
                    t, level = ch[k.seen[i]]
                    k.seen[i] += 1
                    pressed = level == k.value_when_pressed
                    if pressed != k.state[i]:
                        k.state[i] = pressed
                        return i, pressed, t
            return None

        def get(self):
            n = self._next()
            if n is None:
                return None
            return Event(n[0], n[1], int(n[2] * 1000))

        def get_into(self, ev) -> bool:
            n = self._next()
            if n is None:
                return False
            ev.key_number, ev.pressed, ev.released = n[0], n[1], not n[1]
            ev.timestamp = int(n[2] * 1000)
            return True

        def clear(self) -> None:
            while self._next():
                pass

    class Keys:
        def __init__(self, pins, *, value_when_pressed, pull=True, interval=0.02,
                     max_events=64, debounce_threshold=1) -> None:
            self.pins = list(pins)
            self.value_when_pressed = value_when_pressed
            self.seen = [len(p.changes) for p in self.pins]
            self.state = [False] * len(self.pins)
            now = clock.now()
            for i, p in enumerate(self.pins):  # a key held at start reports a press
                if p.level == value_when_pressed:
                    p.changes.insert(self.seen[i], (now, p.level))
            self.events = _Events(self)

        def deinit(self) -> None:
            pass

    keypad_mod = _Namespace(Keys=Keys, Event=Event)

    # microcontroller, watchdog
    class WatchDogMode:
        RAISE = "RAISE"
        RESET = "RESET"

    class WatchDogTimer:
        def __init__(self) -> None:
            self.timeout = 8.0
            self._mode = None

        @property
        def mode(self):
            return self._mode

        @mode.setter
        def mode(self, m) -> None:
            self._mode = m
            self.feed()

        def feed(self) -> None:
            if self._mode is not None:
                b._wd_deadline = clock.now() + self.timeout

        def deinit(self) -> None:
            self._mode = None
            b._wd_deadline = None

    class ResetReason:
        POWER_ON = "POWER_ON"
        DEEP_SLEEP_ALARM = "DEEP_SLEEP_ALARM"
        WATCHDOG = "WATCHDOG"
        SOFTWARE = "SOFTWARE"

    micro_mod = _Namespace(nvm=b.nvm, watchdog=WatchDogTimer(), ResetReason=ResetReason,
                           cpu=_Namespace(reset_reason=getattr(ResetReason, b.reset_reason),
                                          temperature=25.0, uid=b.name.encode()[:8]),
                           reset=_raise_reset)
    watchdog_mod = _Namespace(WatchDogMode=WatchDogMode, WatchDogTimeout=RuntimeError)

    # alarm
    class PinAlarm:
        def __init__(self, pin: Pin, value: bool, edge: bool = False, pull: bool = False):
            self.pin = pin
            self.value = value

        def fired(self) -> bool:
            return self.pin.level == self.value

    class TimeAlarm:
        def __init__(self, *, monotonic_time=None, epoch_time=None) -> None:
            self.monotonic_time = monotonic_time

        def fired(self) -> bool:
            return clock.now() >= self.monotonic_time

    def light_sleep_until_alarms(*alarms):
        while True:
            b.check_alive()
            for a in alarms:
                if a.fired():
                    return a
            clock.sleep(0.01 * clock.speed, b.halt)

    def exit_and_deep_sleep_until_alarms(*alarms, preserve_dios=()):
        raise DeepSleepRequest(alarms)

    if getattr(b, "_alarm_classes", None) is None:  # the same classes across wakes, so
        b._alarm_classes = (PinAlarm, TimeAlarm)   # isinstance(alarm.wake_alarm, ...) works
    PinAlarm, TimeAlarm = b._alarm_classes
    alarm_mod = _Namespace(
        pin=_Namespace(PinAlarm=PinAlarm), time=_Namespace(TimeAlarm=TimeAlarm),
        sleep_memory=b.sleep_memory, wake_alarm=b.wake_alarm,
        light_sleep_until_alarms=light_sleep_until_alarms,
        exit_and_deep_sleep_until_alarms=exit_and_deep_sleep_until_alarms)

    # analogio
    class AnalogIn:
        reference_voltage = 3.3

        def __init__(self, pin: Pin) -> None:
            self.pin = pin

        @property
        def value(self) -> int:
            return min(65535, int(b.battery_mv / 2.0 / 1000 / 3.3 * 65535))

        def deinit(self) -> None:
            pass

    analogio_mod = _Namespace(AnalogIn=AnalogIn)

    # os: getenv reads settings.toml; the file calls act on the firmware's tree
    version = ".".join(str(v) for v in CIRCUITPY_VERSION)
    os_mod = types.SimpleNamespace(**{k: getattr(_os, k) for k in ("listdir", "stat", "sep")})
    os_mod.getenv = b.getenv
    os_mod.urandom = _os.urandom
    os_mod.uname = lambda: ("sim", "sim", version, "sim", b.board_id)

    # sys, gc, micropython, supervisor, select, hashlib: CircuitPython's shapes
    class _Console:
        def write(self, text: str) -> int:
            for ln in str(text).splitlines():
                if ln:
                    b.say(ln)
            return len(text)

        def flush(self) -> None:
            pass

    def print_exception(exc, file=None) -> None:
        for ln in traceback.format_exception(exc):
            (file or console).write(ln)

    def _exit(code=0):
        raise SystemExit(code)

    console = _Console()
    sys_mod = _Namespace(
        implementation=_Namespace(name="circuitpython", version=CIRCUITPY_VERSION,
                                  _machine=b.board_id, _mpy=6),
        platform="Espressif" if b.wifi_capable else "RP2040",
        path=["", "/", ".frozen", "/lib"], modules={}, argv=[], byteorder="little",
        maxsize=2**31 - 1, version="3.4.0; CircuitPython " + version,
        version_info=(3, 4, 0), stdout=console, stderr=console, stdin=None,
        print_exception=print_exception, exit=_exit)
    gc_mod = _Namespace(collect=lambda: None, enable=lambda: None, disable=lambda: None,
                        isenabled=lambda: True, mem_free=lambda: 150_000,
                        mem_alloc=lambda: 40_000)
    micropython_mod = _Namespace(const=lambda v: v, native=lambda f: f, viper=lambda f: f,
                                 opt_level=lambda *a: 0, mem_info=lambda *a: None)
    supervisor_mod = _Namespace(
        ticks_ms=lambda: (b.check_alive(), int(clock.now() * 1000) & (2**29 - 1))[1],
        runtime=_Namespace(serial_connected=b.usb is not None, usb_connected=True,
                           autoreload=False),
        disable_autoreload=lambda: None)

    class _Poll:
        """select.poll() with MicroPython's ipoll (asyncio's wait); with nothing
        registered it sleeps on the simulated clock."""

        def __init__(self) -> None:
            self._p = _select.poll()
            self._n = 0

        def register(self, obj, mask=_select.POLLIN | _select.POLLOUT) -> None:
            self._p.register(obj, mask)
            self._n += 1

        def modify(self, obj, mask) -> None:
            self._p.modify(obj, mask)

        def unregister(self, obj) -> None:
            self._p.unregister(obj)
            self._n -= 1

        def poll(self, timeout=-1):
            b.check_alive()
            if self._n == 0:
                if timeout is not None and timeout >= 0:
                    clock.sleep(timeout / 1000.0, b.halt)
                return []
            t = None if timeout is None or timeout < 0 else timeout / clock.speed
            return self._p.poll(t)

        def ipoll(self, timeout=-1, flags=0):
            return iter(self.poll(timeout))

    select_mod = _Namespace(poll=_Poll, POLLIN=_select.POLLIN, POLLOUT=_select.POLLOUT,
                            POLLERR=_select.POLLERR, POLLHUP=_select.POLLHUP)

    def _hash_new(name: str, data: bytes = b""):
        if name not in ("sha1", "sha256"):
            raise ValueError("Unsupported hash algorithm")
        return _hashlib.new(name, data)

    hashlib_mod = _Namespace(new=_hash_new)  # CircuitPython: no hashlib.sha256

    # Wi-Fi: the real network stack of the host (127.0.0.1 servers in tests)
    class _Radio:
        def __init__(self) -> None:
            self.connected = False
            self.enabled = True
            self.ipv4_address = None

        def connect(self, ssid, password=None, *, channel=0, bssid=None, timeout=None):
            b.check_alive()
            nets = getattr(b, "wifi_networks", {})
            if ssid not in nets:
                raise ConnectionError("No network with that ssid")
            if nets[ssid] and nets[ssid] != password:
                raise ConnectionError("Authentication failure")
            self.connected = True
            self.ipv4_address = "127.0.0.1"

    wifi_mod = _Namespace(radio=_Radio())

    class SocketPool:
        """socketpool.SocketPool over CPython's socket module."""

        AF_INET = _socket.AF_INET
        SOCK_STREAM = _socket.SOCK_STREAM
        SOCK_DGRAM = _socket.SOCK_DGRAM
        IPPROTO_TCP = _socket.IPPROTO_TCP
        SOL_SOCKET = _socket.SOL_SOCKET
        SO_REUSEADDR = _socket.SO_REUSEADDR
        TCP_NODELAY = _socket.TCP_NODELAY
        timeout = TimeoutError
        gaierror = _socket.gaierror

        def __init__(self, radio) -> None:
            if not radio.connected:
                raise RuntimeError("Wi-Fi is not connected")

        def getaddrinfo(self, *a, **kw):
            b.check_alive()
            return _socket.getaddrinfo(*a, **kw)

        def socket(self, family=_socket.AF_INET, type=_socket.SOCK_STREAM, proto=0):
            b.check_alive()
            return _socket.socket(family, type, proto)

    socketpool_mod = _Namespace(SocketPool=SocketPool)

    usb_cdc_mod = _Namespace(data=getattr(b, "serial", None), console=None,
                             enable=lambda **kw: None)

    busio_mod = _Namespace(SPI=spi_bus, I2C=lambda *a, **kw: _I2C())
    mods = dict(HOST_BUILTINS)
    mods.update({"time": time_mod, "board": board_mod, "digitalio": digitalio_mod,
                 "keypad": keypad_mod, "microcontroller": micro_mod, "watchdog": watchdog_mod,
                 "alarm": alarm_mod, "analogio": analogio_mod, "os": os_mod,
                 "usb_cdc": usb_cdc_mod, "busio": busio_mod, "sys": sys_mod, "gc": gc_mod,
                 "micropython": micropython_mod, "supervisor": supervisor_mod,
                 "select": select_mod, "hashlib": hashlib_mod})
    if b.wifi_capable:
        mods.update({"wifi": wifi_mod, "socketpool": socketpool_mod, "ssl": _ssl})
    return mods


def _raise_reset() -> None:
    raise _WatchdogReset()
