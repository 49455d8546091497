"""The MQTT link never blocks its caller, and the [cluster] settings refuse what cannot work."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from panicgw.cluster.link import ClusterLink
from panicgw.cluster.settings import ClusterSettings

from .conftest import Broker, Plain, free_port, need_mosquitto, wait


def test_broker_down_never_blocks_buffers_bounded_and_catches_up(tmp_path: Path) -> None:
    need_mosquitto()
    port = free_port()
    link = ClusterLink("127.0.0.1", port, "link-test", max_buffered=100,
                       reconnect_min_s=0.1, reconnect_max_s=0.3)
    b = Broker(tmp_path, port)
    try:
        link.start()  # no broker yet
        done = threading.Event()

        def burst() -> None:
            for n in range(1000):
                link.publish("t/events", str(n).encode())
                link.publish("t/status", str(n).encode(), sticky=True)
            done.set()

        threading.Thread(target=burst, daemon=True).start()
        assert done.wait(10), "publish blocked while the broker is down"
        assert not link.connected and link.dropped == 901  # 100 held: 99 events + status
        b.start()
        watcher = Plain(port, "t/#")
        assert wait(lambda: link.connected)
        assert wait(lambda: sum(t == "t/events" for t, _, _ in watcher.got) == 99)
        events = [int(p) for t, p, _ in watcher.got if t == "t/events"]
        assert events == list(range(901, 1000))  # the newest kept, in order
        # the sticky status: only its latest version went out, and it is retained
        assert [p for t, p, _ in watcher.got if t == "t/status"] == [b"999"]
        late = Plain(port, "t/status")
        assert wait(lambda: late.got == [("t/status", b"999", True)])
        late.close()
        watcher.close()
        # broker restarted without its retained store: the sticky message is re-published
        b.stop()
        assert wait(lambda: not link.connected)
        b.start()
        assert wait(lambda: link.connected)
        late = Plain(port, "t/status")
        assert wait(lambda: late.got == [("t/status", b"999", True)])
        late.close()
        assert link.stats()["connects"] == 2
    finally:
        t0 = time.monotonic()
        link.stop(1.0)
        assert time.monotonic() - t0 < 2.5
        b.stop()


def test_settings_from_a_config_section() -> None:
    s = ClusterSettings.from_mapping("gw-a", {"enabled": True, "group": "bandung",
                                              "host": "broker", "port": 8883, "tls": True,
                                              "password": "pw-123", "collect_s": 0.35})
    assert s.port == 8883 and s.collect_s == 0.35 and "pw-123" not in repr(s)
    for bad in ({"group": "a/b"}, {"group": "g", "collect_s": 2.9},
                {"group": "g", "collect_s": 1.5}, {"group": "g", "port": 0},
                {"group": "g", "client_cert": "c.pem"},
                {"group": "g", "stale_s": 5, "status_interval_s": 10}):
        with pytest.raises(ValueError):
            ClusterSettings.from_mapping("gw-a", bad)
    with pytest.raises(ValueError):
        ClusterSettings.from_mapping("gw/a", {"group": "g"})
