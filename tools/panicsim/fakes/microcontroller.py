"""``microcontroller``: the board's NVM (``SimNVM``: counts writes, can lose power in the
middle of one), the watchdog timer, the reset reason of this run, ``reset()``."""

from types import SimpleNamespace

from panicsim.clock import Halted


class WatchdogReset(BaseException):
    """The watchdog expired (or microcontroller.reset()): the board restarts code.py."""


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


class ResetReason:
    POWER_ON = "POWER_ON"
    DEEP_SLEEP_ALARM = "DEEP_SLEEP_ALARM"
    WATCHDOG = "WATCHDOG"
    SOFTWARE = "SOFTWARE"


def _reset() -> None:
    raise WatchdogReset()


def module(b) -> SimpleNamespace:
    class WatchDogTimer:
        """Armed by setting ``mode``; ``feed`` moves the board's deadline (checked by
        ``SimBoard.check_alive`` on the simulated clock)."""

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
                b._wd_deadline = b.clock.now() + self.timeout

        def deinit(self) -> None:
            self._mode = None
            b._wd_deadline = None

    cpu = SimpleNamespace(reset_reason=getattr(ResetReason, b.reset_reason), temperature=25.0,
                          uid=b.name.encode()[:8])
    return SimpleNamespace(nvm=b.nvm, watchdog=WatchDogTimer(), ResetReason=ResetReason,
                           cpu=cpu, reset=_reset)
