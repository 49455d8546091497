# The board's wires to the outside world, kept small: the boot gate imports only this.
# With a host harness (gate_config.LINK: tests/tools/mpboard.py's hardware mode) the board
# module connects hwwire, and from then on every wait, sleep and radio access here also
# handles what the host sent (radio packets from the air, a finger on the button).
import gate_config
import utime

watchdog_deadline = None  # wall time by which microcontroller.watchdog must be fed
wire = None  # the hwwire module once the board is connected to its host


class Reset(BaseException):
    """The board resets (watchdog, microcontroller.reset()): launch.py starts it again
    from boot.py, RAM lost."""


class Wake(BaseException):
    """A deep sleep's alarm fired: launch.py runs code.py again (``alarm.wake_alarm``)."""


def wall():
    """Wall-clock seconds: the clock the host harness uses for the air, too."""
    return utime.time_ns() / 1e9


def linked():
    return getattr(gate_config, "LINK", None) is not None


def _check_watchdog():
    global watchdog_deadline
    if watchdog_deadline is not None and wall() > watchdog_deadline:
        watchdog_deadline = None
        raise Reset("watchdog")


def pump():
    """Handle what the host sent so far, without waiting."""
    _check_watchdog()
    if wire is not None:
        wire.read(0)


def wait(seconds, done=None):
    """Sleep ``seconds`` while handling host messages; returns early (True) once
    ``done()`` is true."""
    end = wall() + seconds
    while True:
        _check_watchdog()
        if done is not None and done():
            return True
        left = end - wall()
        if left <= 0:
            return False
        if wire is None:
            utime.sleep(min(left, 0.05) if done is not None else left)
        else:
            wire.read(int(min(left, 0.5) * 1000) + 1)
