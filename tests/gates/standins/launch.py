# Runs /boot.py or /code.py (env GATE_MAIN) as CircuitPython would: as __main__, with
# CircuitPython's sys in place of the VM's. Without GATE_MAIN (or without that file) it
# only puts CircuitPython's sys in place, for the REPL. A board in a host harness
# (gate_config.LINK) runs it under supervise.py: deep-sleep wakes and resets.
import cp_sys
import gate_config
import uos
import usys

usys.modules["sys"] = cp_sys


def run(name):
    with open(name) as f:
        src = f.read()
    code = compile(src, name, "exec")
    del src
    exec(code, {"__name__": "__main__", "__file__": name})


def _main():
    name = uos.getenv("GATE_MAIN")
    try:
        uos.stat(name or "")
    except OSError:
        return
    if getattr(gate_config, "LINK", None) is None:
        run(name)
    else:
        import supervise

        supervise.main(run, name)


_main()
