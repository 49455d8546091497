import gate_config
import hwlink

if getattr(gate_config, "NVM_FILE", None):  # a board harness: NVM outlives the VM
    from filebytes import FileBytes

    nvm = FileBytes(gate_config.NVM_FILE)
else:
    nvm = bytearray(gate_config.NVM)


class _WatchDog:
    """Armed (mode set) it resets the board unless fed within ``timeout`` (checked whenever
    the firmware waits, sleeps or talks to the radio: hwlink)."""

    def __init__(self):
        self.timeout = 8.0
        self._mode = None

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, m):
        self._mode = m
        self.feed()

    def feed(self):
        if self._mode is not None:
            hwlink.watchdog_deadline = hwlink.wall() + self.timeout

    def deinit(self):
        self._mode = None
        hwlink.watchdog_deadline = None


watchdog = _WatchDog()


class _Cpu:
    temperature = 25.0
    uid = b"bootgate"
    reset_reason = None


cpu = _Cpu()


def reset():
    raise hwlink.Reset("microcontroller.reset()")
