"""A simulated CircuitPython board that runs a flashed firmware tree's real ``code.py``.

The board runs exactly the files ``panictool flash`` writes to CIRCUITPY
(``panicimage.manifest``): from ``drive`` when it holds a ``code.py`` (flashed by the
tool), else from a private copy of the manifest's tree. Imports resolve as on a board
(panicsim.loader): the board's built-ins, then ``/`` and ``/lib`` of that tree, and
nothing of the host's, so a module missing from the manifest raises ImportError here too.

Built-ins are per board and per run: panicsim.fakes has one small module per
CircuitPython built-in (fake hardware: board, digitalio, keypad, microcontroller, alarm,
watchdog, usb_cdc, analogio, busio; wifi, socketpool and ssl on Wi-Fi boards; and
CircuitPython-shaped core modules: time on the simulated clock, os, sys with
``implementation.name == "circuitpython"``, hashlib with only ``new``, binascii without
``crc_hqx``, gc, micropython, supervisor, select with ``ipoll``), and this module
assembles them. The RFM95 is a register-level SX127x model on the SPI bus
(panicsim.radio), driven by the real ``adafruit_rfm`` library.

Deep sleep ends code.py, waits for the alarms and runs code.py again with sleep memory
kept; a power cut stops it and loses RAM, sleep memory and the radio's registers; NVM
survives both. Several boards run side by side in one process, each in its own thread.

``drive`` is the board's CIRCUITPY directory: settings.toml is read from it at every boot
(as CircuitPython's ``os.getenv`` does), so a tool that rewrites it takes effect on reload.
``usb_console()`` adds the USB serial console (panicsim.console) with a raw REPL.
"""

import atexit
import hashlib
import shutil
import sys as _sys
import tempfile
import threading
import tomllib
import traceback
from pathlib import Path

from panicsim import fakes
from panicsim.clock import Halted, SimClock
from panicsim.console import UsbConsole
from panicsim.fakes.alarm import DeepSleepRequest
from panicsim.fakes.board import Pin
from panicsim.fakes.microcontroller import SimNVM, WatchdogReset
from panicsim.loader import ModuleSpace
from panicsim.radio import SimRadio
from panicsim.sx127x import SPIBus

_TREES: dict[tuple[str, str], Path] = {}
_TREES_LOCK = threading.Lock()


def flashed_tree(role: str) -> Path:
    """A directory holding exactly what ``panictool flash`` writes for ``role`` (built
    once per process from panicimage.manifest, rebuilt when a firmware file changes)."""
    from panicimage import manifest

    entries = manifest.build(role)
    digest = hashlib.sha256("".join(e.dest + e.sha256 for e in entries).encode()).hexdigest()
    with _TREES_LOCK:
        tree = _TREES.get((role, digest))
        if tree is None:
            tree = Path(tempfile.mkdtemp(prefix=f"panicsim-{role}-"))
            atexit.register(shutil.rmtree, tree, True)
            manifest.write_tree(role, tree, entries)
            _TREES[(role, digest)] = tree
    return tree


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
        (it must hold code.py and lib/ as ``panicimage.manifest.write_tree`` writes them)."""
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
        self.pins: dict[str, Pin] = {}
        self.console: list[str] = []
        self.led_log: list = []  # (time, on)
        self.cold_boots = 0
        self.boot_log: list[tuple[float, str]] = []  # (clock time, reset reason) per run
        self.crash: str | None = None
        self.halt = threading.Event()
        self.wake_alarm = None
        self.reset_reason = "POWER_ON"
        self.spi = SPIBus()
        self.radio: SimRadio | None = None
        if radio_present and self.radio_pins is not None:
            cs, rst = self.radio_pins
            self.radio = SimRadio(air, self, name)
            self.spi.attach(self.radio)
            self.pin(cs).listeners.append(self.radio.cs)
            self.pin(rst).listeners.append(self.radio.rst)
        self.battery_mv = 3900
        self._alarm_classes = None
        self._thread: threading.Thread | None = None
        self._life = threading.Lock()  # a thread is never seen assigned but not started
        self._lines = threading.Lock()
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
        with self._life:  # the USB console's Ctrl-D may launch while a test stops the board
            return self._launch_locked(reason)

    def _launch_locked(self, reason: str) -> "SimBoard":
        if self._thread and self._thread.is_alive():
            return self
        self.halt.clear()
        self.wake_alarm = None
        self.reset_reason = reason
        if self.usb is not None:
            self.usb.on_boot()  # before code.py prints its first line
        if self.radio is not None:
            self.radio.attach()
        member = self.clock.member()  # before the thread starts: time waits for it
        self._thread = threading.Thread(target=self._run,
                                        args=(reason == "POWER_ON", member),
                                        name="sim-" + self.name, daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """True while code.py (or a deep sleep between its runs) is in progress."""
        return self._thread is not None and self._thread.is_alive()

    def usb_console(self, link_dir: str | Path | None = None):
        """Give the board its USB serial console on a pty (``.usb.path``); returns it."""
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
        self.clock.poke()  # a thread waiting on the clock sees the halt at once
        with self._life:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

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
        if self._wd_deadline is not None and self.clock.now() >= self._wd_deadline:
            self._wd_deadline = None
            raise WatchdogReset()

    def say(self, text: str) -> None:
        with self._lines:
            self.console.append(text)
        self.clock.poke()  # wait_for_line looks again
        if self.usb is not None:
            self.usb.output(text)

    def wait_for_line(self, predicate, timeout: float = 10.0, start: int = 0) -> str | None:
        """First console line (from index ``start``) matching ``predicate``, waiting up
        to ``timeout`` real seconds (on a VirtualClock, simulated time runs meanwhile)."""
        seen = [start]
        found: list[str] = []

        def look() -> bool:
            lines = self.console
            while seen[0] < len(lines):
                ln = lines[seen[0]]
                seen[0] += 1
                if predicate(ln):
                    found.append(ln)
                    return True
            return False

        self.clock.wait_until(None, wake=look, real_timeout=timeout)
        return found[0] if found else None

    def wait_alarms(self, alarms):
        """The first of ``alarms`` (alarm.pin.PinAlarm / alarm.time.TimeAlarm) to fire,
        waiting on the clock (a pin change pokes it); the watchdog still bites."""
        deadline = None
        for a in alarms:
            t = getattr(a, "monotonic_time", None)
            if t is not None and (deadline is None or t < deadline):
                deadline = t
        while True:
            self.check_alive()
            for a in alarms:
                if a.fired():
                    return a
            wd = self._wd_deadline
            until = deadline if wd is None or (deadline is not None and deadline < wd) else wd
            self.clock.wait_until(until, self.halt,
                                  wake=lambda: any(a.fired() for a in alarms))

    # -- running code.py --------------------------------------------------------------
    def _run(self, cold: bool, member) -> None:
        member.adopt()
        try:
            self._boots(cold)
        finally:
            member.leave()

    def _boots(self, cold: bool) -> None:
        while not self.halt.is_set():
            self.boot_log.append((self.clock.now(), self.reset_reason))
            if cold:
                self.cold_boots += 1
            self._read_drive_settings()
            try:
                if cold:
                    self._boot_py()
                self._exec(self.modules())
                self.say("Code done running.")
                return
            except DeepSleepRequest as req:
                try:
                    self._sleep_until(req.alarms)
                except Halted:  # stopped or powered off while asleep
                    return
                self.reset_reason = "DEEP_SLEEP_ALARM"
                cold = False
            except WatchdogReset:
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
        from panicimage import manifest

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
            self.module_space(self.modules(), root).run("boot.py")
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
        self.wake_alarm = self.wait_alarms(alarms)

    # -- built-in modules ---------------------------------------------------------------
    def modules(self) -> dict:
        """Fresh built-in modules (panicsim.fakes: fake hardware and CircuitPython-shaped
        core modules) for one run of code.py, boot.py or a REPL session."""
        return fakes.modules(self)

    def getenv(self, key: str, default=None):
        v = self.settings.get(key, default)
        return v
