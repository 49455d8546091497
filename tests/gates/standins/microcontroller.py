import gate_config

nvm = bytearray(gate_config.NVM)


class _WatchDog:
    timeout = 8.0
    mode = None

    def feed(self):
        pass

    def deinit(self):
        self.mode = None


watchdog = _WatchDog()


class _Cpu:
    temperature = 25.0
    uid = b"bootgate"
    reset_reason = None


cpu = _Cpu()


def reset():
    raise SystemExit("microcontroller.reset()")
