# CircuitPython's supervisor for one power-on of a board in a host harness (launch.py):
# a deep sleep's alarm runs code.py again from the top with alarm.wake_alarm set; a reset
# (watchdog, microcontroller.reset()) runs boot.py and code.py again. Either way the
# firmware's modules are dropped (RAM is lost); the stand-ins, which are the hardware (pins,
# the radio chip, NVM, sleep memory), stay. When code.py stops (Ctrl-C, an error) the
# watchdog is disarmed, as CircuitPython does before its REPL.
import gc

import hwlink
import uos
import usys

_STANDINS = __file__.rsplit("/", 1)[0]


def _forget_firmware():
    for name in list(usys.modules):
        f = getattr(usys.modules[name], "__file__", None)
        if f is not None and not f.startswith(_STANDINS):
            del usys.modules[name]
    gc.collect()


def _disarm():
    mc = usys.modules.get("microcontroller")
    if mc is not None:
        mc.watchdog.deinit()


def _exists(name):
    try:
        uos.stat(name)
        return True
    except OSError:
        return False


def main(run, name):
    while True:
        try:
            run(name)
            return
        except hwlink.Wake as e:
            _disarm()
            _forget_firmware()
            usys.modules["alarm"].wake_alarm = e.args[0]
        except hwlink.Reset as e:
            _disarm()
            _forget_firmware()
            print("[board] reset (" + str(e.args[0]) + ")")
            if "alarm" in usys.modules:
                usys.modules["alarm"].wake_alarm = None
            if _exists("boot.py"):
                run("boot.py")
        except BaseException:
            _disarm()
            raise
        name = "code.py"
