# Runs /boot.py or /code.py (env GATE_MAIN) as CircuitPython would: as __main__, with
# CircuitPython's sys in place of the VM's.
import os

import cp_sys
import usys

usys.modules["sys"] = cp_sys
_name = os.getenv("GATE_MAIN")
with open(_name) as _f:
    _src = _f.read()
_code = compile(_src, _name, "exec")
del _src
exec(_code, {"__name__": "__main__", "__file__": _name})
