"""A virtual wall clock for a real `panicgw` process (tests only, via PYTHONPATH).

``PB_VCLOCK="BASE,SCALE,TICK"``: ``time.time()`` returns ``BASE + SCALE * (real - BASE)``, the
same function of real time in every process that has it (the daemon and the CLI that
registers a device agree on "now"), and the daemon evaluates supervision every TICK real
seconds (``Gateway.supervise_every_s``, the time hook the demo uses too). Monotonic time
and every timeout stay real. Without ``PB_VCLOCK`` nothing changes.
"""

import os
import time

_spec = os.environ.get("PB_VCLOCK")
if _spec:
    _base, _scale, _tick = (float(x) for x in _spec.split(","))
    _real = time.time

    def _virtual() -> float:
        return _base + _scale * (_real() - _base)

    time.time = _virtual

    from panicgw.daemon import Gateway

    Gateway.supervise_every_s = _tick
