"""A simulated CircuitPython board that runs a firmware directory's real ``code.py``.

Each board gets its own fake hardware modules (board, digitalio, keypad, microcontroller,
alarm, watchdog, usb_cdc, time, os, analogio, busio, wifi, socketpool, adafruit_rfm9x),
handed to code.py and the glue modules beside it through a private ``__import__``, so
several boards run side by side in one process, each in its own thread. Everything else
(panicbutton, panicproto, the real adafruit_requests, ssl) is imported normally.

Deep sleep ends code.py, waits for the alarms and runs code.py again with sleep memory
kept; a power cut stops it and loses RAM and sleep memory; NVM survives both.

``drive`` is the board's CIRCUITPY directory: settings.toml is read from it at every boot
(as CircuitPython's ``os.getenv`` does), so a tool that rewrites it takes effect on reload.
``usb_console()`` adds the USB serial console (panicsim.console) with a raw REPL.
"""

import builtins
import os as _os
import socket as _socket
import threading
import tomllib
import traceback
import types
from pathlib import Path

from panicsim.clock import Halted, SimClock

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"


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

    def __init__(self, air=None, clock: SimClock | None = None, settings: dict | None = None,
                 settings_toml: str | Path | None = None, name: str = "board",
                 nvm_size: int = 4096, radio_present: bool = True,
                 firmware_dir: Path | None = None, drive: str | Path | None = None) -> None:
        self.clock = clock or (air.clock if air is not None else SimClock())
        self.air = air
        self.name = name
        self.settings = dict(settings or {})
        if settings_toml is not None:
            self.settings.update(tomllib.loads(Path(settings_toml).read_text()))
        self.drive = Path(drive) if drive is not None else None
        self._base_settings = dict(self.settings)
        self.usb = None  # panicsim.console.UsbConsole once usb_console() was called
        self.firmware_dir = Path(firmware_dir or FIRMWARE / self.kind)
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
        self.radio = None
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
        if self.usb is not None:
            self.usb.close()
            self.usb = None

    def _halt_thread(self, timeout: float = 5.0) -> None:
        self.halt.set()
        if self._thread:
            self._thread.join(timeout)
        if self.radio is not None and self.air is not None:
            self.air.detach(self.radio)
            self.radio = None

    def power_cut(self) -> None:
        """Cut power: the firmware stops wherever it is; RAM and sleep memory are lost,
        NVM is kept. ``start()`` powers on again."""
        self._halt_thread()
        self.sleep_memory[:] = bytes(len(self.sleep_memory))

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
            modules = self._modules()
            try:
                self._exec(modules)
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
                if self.radio is not None and self.air is not None:
                    self.air.detach(self.radio)
                    self.radio = None

    def _exec(self, modules: dict) -> None:
        loaded: dict[str, types.ModuleType] = {}
        real_import = builtins.__import__
        fw = self.firmware_dir

        def sim_import(name, globals=None, locals=None, fromlist=(), level=0):
            root = name.split(".")[0]
            if root in modules:
                return modules[root]
            if root in loaded:
                return loaded[root]
            glue = fw / (root + ".py")
            if level == 0 and glue.exists():
                mod = types.ModuleType(root)
                mod.__file__ = str(glue)
                mod.__dict__["__builtins__"] = sim_builtins
                loaded[root] = mod
                exec(compile(glue.read_text(), str(glue), "exec"), mod.__dict__)
                return mod
            return real_import(name, globals, locals, fromlist, level)

        def sim_print(*args, sep=" ", end="\n", **kw):
            text = sep.join(str(a) for a in args)
            for ln in text.splitlines() or [""]:
                self.say(ln)

        sim_builtins = dict(builtins.__dict__)
        sim_builtins["__import__"] = sim_import
        sim_builtins["print"] = sim_print
        code = fw / "code.py"
        g = {"__name__": "__main__", "__file__": str(code), "__builtins__": sim_builtins}
        exec(compile(code.read_text(), str(code), "exec"), g)

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
    """Fresh fake hardware modules for one run of code.py on board ``b``."""
    clock = b.clock

    # time
    time_mod = _Namespace(
        monotonic=lambda: (b.check_alive(), clock.now())[1],
        monotonic_ns=lambda: int(clock.now() * 1e9),
        time=lambda: int(1_700_000_000 + clock.now()),
        sleep=lambda s: (b.check_alive(), clock.sleep(s, b.halt))[1],
        localtime=__import__("time").localtime,
        struct_time=__import__("time").struct_time,
    )

    # board
    class _SPI:
        def __init__(self) -> None:
            self.locked = False

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

    board_mod = _Board(board_id=b.board_id, SPI=_SPI, I2C=_I2C)

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
            self.pin.output = v

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

    # os: only getenv differs from the host's
    os_mod = types.SimpleNamespace(**{k: getattr(_os, k) for k in ("listdir", "stat", "sep")})
    os_mod.getenv = b.getenv
    os_mod.uname = lambda: ("sim", "sim", "9.0.0", "sim", b.board_id)

    # radio
    def RFM9x(spi, cs, reset, frequency, **kw):
        from panicsim.radio import SimRFM9x

        if not b.radio_present or b.air is None:
            raise RuntimeError("Failed to find rfm9x with expected version -- check wiring")
        if b.radio is not None:
            b.air.detach(b.radio)
        b.radio = SimRFM9x(b.air, b, b.name, frequency)
        return b.radio

    rfm_mod = _Namespace(RFM9x=RFM9x)

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

    return {"time": time_mod, "board": board_mod, "digitalio": digitalio_mod,
            "keypad": keypad_mod, "microcontroller": micro_mod, "watchdog": watchdog_mod,
            "alarm": alarm_mod, "analogio": analogio_mod, "os": os_mod,
            "adafruit_rfm9x": rfm_mod, "wifi": wifi_mod, "socketpool": socketpool_mod,
            "usb_cdc": usb_cdc_mod, "busio": _Namespace()}


def _raise_reset() -> None:
    raise _WatchdogReset()
