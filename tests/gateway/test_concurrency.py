"""One owner per piece of state, no blocking I/O on the event loop (issue 11 point 6).

- ``Rejections`` is counted from the pipeline thread, the event loop (HTTP) and the serial
  reader at once, while the pipeline takes the unsaved counts to store them: no count is
  lost or stored twice.
- ``status()`` (the status API, and MQTT's every 10 s) reads SQLite on its own thread,
  never on the loop.
(The serial writes are test_serial_link.py's stalled-pty test.)
"""

from __future__ import annotations

import sys
import threading

from gwharness import GatewayThread, make_config

from panicgw import pipeline as pl
from panicgw.store.service import STATUS


def test_rejection_counts_are_never_lost_between_threads():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        rej = pl.Rejections(log_per_min=0)
        n = 60_000
        stored: dict[str, int] = {}
        done = threading.Event()

        def counter(reason: str) -> None:
            for _ in range(n):
                rej.count(reason)
                rej.count("shared")

        def saver() -> None:  # the pipeline thread storing what was counted
            while not done.is_set():
                for r, c in rej.take_unsaved().items():
                    stored[r] = stored.get(r, 0) + c

        threads = [threading.Thread(target=counter, args=(r,)) for r in ("a", "b", "c")]
        s = threading.Thread(target=saver)
        s.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        s.join()
        for r, c in rej.take_unsaved().items():
            stored[r] = stored.get(r, 0) + c
    finally:
        sys.setswitchinterval(old)
    want = {"a": n, "b": n, "c": n, "shared": 3 * n}
    assert rej.counts == want
    assert stored == want


def test_status_reads_sqlite_on_its_own_thread(tmp_path):
    cfg = make_config(tmp_path)
    with GatewayThread(cfg) as g:
        seen: list[str] = []
        store = g.gw.store.reader(STATUS).store
        for name in ("outbox_counts", "rejections", "dead_letters"):
            real = getattr(store, name)

            def spy(*a, _real=real, **kw):
                seen.append(threading.current_thread().name)
                return _real(*a, **kw)
            setattr(store, name, spy)
        st = g.status()
        assert st["outbox"]["pending"] == 0 and "rejections_total" in st
        loop_thread = g._thread.name
        assert len(seen) == 3 and all(t.startswith("status") for t in seen), seen
        assert loop_thread not in seen
