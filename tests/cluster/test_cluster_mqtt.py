"""Three cluster nodes over a real Mosquitto: authentication, registry distribution, the
downlink election, and broker outages (issue 14, phase 1: the coordination layer alone)."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from pathlib import Path

import pytest

from panicgw.cluster import election as el
from panicgw.cluster import state as S
from panicgw.cluster.crypto import GroupKeys
from panicgw.cluster.messages import BAD_MAC, REPLAY, Codec, RxReport
from panicgw.cluster.node import ClusterNode

from .conftest import GROUP, SECRET, Broker, LoopThread, Nodes, Plain, free_port, record, wait

DEV = 0x1234ABCD


def rx(node: ClusterNode, counter: int, attempt: int = 0, *, snr: float = 5.0,
       rssi: float = -90.0, device_id: int = DEV, **kw: object) -> RxReport:
    return RxReport(node.gateway_id, device_id, 1, counter, attempt, "alarm", "lora", rssi,
                    snr, time.time(), **{"downlink": True, **kw})  # type: ignore[arg-type]


def trio(nodes: Nodes, port: int, **kw: object) -> list[ClusterNode]:
    ns = [nodes(gw, port, **kw) for gw in ("gw-a", "gw-b", "gw-c")]
    assert wait(lambda: all(n.synced and len(n.members.live()) == 2 for n in ns)), \
        [n.counters() for n in ns]
    return ns


def test_authenticated_messages_pass_forged_and_replayed_ones_do_not(
        broker: Broker, nodes: Nodes) -> None:
    operator = Plain(broker.port)  # the broker's operator sees everything on the wire
    a, b, c = trio(nodes, broker.port)
    a.report(rx(a, 500, incident="I-500"))
    assert wait(lambda: b.last_heard(DEV) is not None and c.last_heard(DEV) is not None)
    assert b.peer_verdict(DEV, 1, 500, 0).verdict == S.COPY
    assert b.peer_verdict(DEV, 1, 500, 0).incident == "I-500"

    intruder = Plain(broker.port, "none/#")
    t = a.topics
    outsider = Codec(GroupKeys(b"\x07" * 32, GROUP), "gw-a")
    forged = outsider.encode(rx(a, 9, device_id=0x0BADF00D))
    intruder.publish(forged.topic, forged.payload)  # right format, wrong secret
    intruder.publish(t.of("rx", "gw-x"), b'{"v":1}\n' + base64.b64encode(b"\0" * 32))
    intruder.publish(t.of("rx", "gw-a"), b'{"v":1,"kind":"rx"}')  # no tag at all
    reg = outsider.encode(outsider.registry_entry(record(0x0BADF00D), 0x0BADF00D, 9))
    intruder.publish(reg.topic, reg.payload, retain=True)
    # a genuine message of A's, recorded off the broker and played back
    captured = next(p for tp, p, _ in operator.got if tp == t.of("rx", "gw-a"))
    intruder.publish(t.of("rx", "gw-a"), captured)
    for n in (b, c):
        assert wait(lambda n=n: n.codec.rejected[BAD_MAC] >= 4 and n.codec.rejected[REPLAY]
                    >= 1), n.counters()
        assert n.last_heard(0x0BADF00D) is None
        assert n.replica.get(0x0BADF00D) is None
    assert nodes.registry["gw-b"] == [] and nodes.registry["gw-c"] == []
    intruder.close()
    operator.close()


def test_registry_reaches_every_gateway_sealed_and_stale_never_wins(
        broker: Broker, nodes: Nodes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    operator = Plain(broker.port)
    a, b, c = trio(nodes, broker.port)
    old = record(key=b"\x11" * 16)
    a.local_change(DEV, old)
    for gw in ("gw-b", "gw-c"):
        assert wait(lambda gw=gw: len(nodes.registry[gw]) == 1)
        got = nodes.registry[gw][0]
        assert got.record.key == old.key and got.gen == 1 and got.origin == "gw-a"
    gen1 = next(p for tp, p, _ in operator.got if tp == a.topics.registry(DEV))

    # rekeyed at B: A and C take the new key
    new = record(key=b"\x22" * 16, key_gen=2)
    b.local_change(DEV, new)
    for n in (a, c):
        assert wait(lambda n=n: n.replica.get(DEV).gen == 2)
        assert n.replica.get(DEV).record.key == new.key
    assert nodes.registry["gw-a"][-1].record.key == new.key

    # the old entry played back, retained, by someone with broker access: refused
    # everywhere, and the newest is put back on the broker for gateways joining later
    intruder = Plain(broker.port, "none/#")
    intruder.publish(a.topics.registry(DEV), gen1, retain=True)
    assert wait(lambda: all(n.replica.stats["stale"] >= 1 for n in (a, b, c)))
    assert all(n.replica.get(DEV).record.key == new.key for n in (a, b, c))
    late = nodes("gw-d", broker.port)
    assert wait(lambda: late.synced and late.replica.get(DEV) is not None)
    assert wait(lambda: late.replica.get(DEV).gen == 2)
    assert nodes.registry["gw-d"][-1].record.key == new.key

    # an old export imported at C: not published, and C's store gets the group's key back
    c.local_change(DEV, old)
    assert c.stats["local_refused"] == 1
    assert nodes.registry["gw-c"][-1].record.key == new.key

    # removal propagates too
    a.local_change(DEV, None)
    assert wait(lambda: all(n.replica.records() == {} for n in (b, c, late)))
    assert nodes.registry["gw-b"][-1].record is None

    time.sleep(0.3)  # whatever is still in flight
    wire = b"".join(p for _, p, _ in operator.got)
    assert operator.got and a.topics.registry(DEV).encode() in b"".join(
        t.encode() for t, _, _ in operator.got)
    for key in (old.key, new.key):
        assert key.hex().encode() not in wire and key.hex().upper().encode() not in wire
        assert base64.b64encode(key) not in wire
    assert b"Merdeka" not in wire  # nor a site's address
    # and no key in the gateways' logs (the conflict and the stale entries were logged)
    assert "registry_stale" in caplog.text and "not published" in caplog.text
    for key in (old.key, new.key, SECRET):
        assert key.hex() not in caplog.text.lower()
    intruder.close()
    operator.close()


@pytest.mark.parametrize("delay_s", [0.0, 0.1])
def test_three_gateways_agree_on_one_downlink(broker: Broker, nodes: Nodes, loop: LoopThread,
                                              delay_s: float) -> None:
    """With ``delay_s`` every message waits that long before it leaves each gateway: the
    100 ms of a 4G round trip (half up, half down) and more."""
    ns = trio(nodes, broker.port, publish_delay_s=delay_s)
    heard = {"gw-a": (2.5, -101.0), "gw-b": (7.75, -96.0), "gw-c": (7.75, -93.0)}
    for counter in (10, 11, 12):

        async def all_three(counter: int = counter) -> list[el.Decision]:
            return list(await asyncio.gather(*(
                n.elect(rx(n, counter, snr=heard[n.gateway_id][0],
                           rssi=heard[n.gateway_id][1])) for n in ns)))

        decisions = loop.run(all_three())
        assert [d.transmit for d in decisions] == [False, False, True], decisions
        assert {d.winner for d in decisions} == {"gw-c"}
        assert decisions[2].reason == el.BEST
        # a loser decides on the reports, or (already) on the winner's claim
        assert {d.reason for d in decisions[:2]} <= {el.OUTRANKED, el.CLAIMED}
        assert len(decisions[2].candidates) == 3
        assert all(d.waited_s <= el.DEFAULT_COLLECT_S + 0.15 for d in decisions)
    # C alone hears counter 20 and transmits; A's copy comes late (after C's claim): even
    # with the better signal, A does not transmit a second ACK
    first = loop.run(ns[2].elect(rx(ns[2], 20, snr=1.0)))
    assert first.transmit and first.reason == el.ALONE
    key = rx(ns[0], 20).key
    assert wait(lambda: ns[0].elector.election.claims(key) == {"gw-c"})
    late = loop.run(ns[0].elect(rx(ns[0], 20, snr=9.0)))
    assert not late.transmit and late.reason == el.CLAIMED and late.winner == "gw-c"


def test_a_gateway_that_hears_no_peer_transmits(broker: Broker, nodes: Nodes,
                                                loop: LoopThread) -> None:
    a, b, c = trio(nodes, broker.port)
    t0 = time.monotonic()
    d = loop.run(a.elect(rx(a, 77)))
    assert d.transmit and d.reason == el.ALONE
    assert el.DEFAULT_COLLECT_S - 0.01 <= time.monotonic() - t0 < el.DEFAULT_COLLECT_S + 0.2


def test_broker_down_every_gateway_decides_alone_and_state_converges_after(
        tmp_path: Path, nodes: Nodes, loop: LoopThread) -> None:
    port = free_port()
    broker = Broker(tmp_path, port)  # no persistence: a restart loses everything retained
    broker.start()
    try:
        a, b, c = trio(nodes, port)
        a.local_change(DEV, record())
        assert wait(lambda: all(n.replica.get(DEV) is not None for n in (b, c)))

        broker.stop()
        assert wait(lambda: not any(n.connected for n in (a, b, c)))
        for n in (a, b, c):
            t0 = time.monotonic()
            d = loop.run(n.elect(rx(n, 40)))
            assert d.transmit and d.reason == el.ISOLATED
            assert time.monotonic() - t0 < 0.1  # no window to wait out without a broker
            assert n.owns_silence(DEV)  # cut off: supervises alone, as today
        a.report(rx(a, 41, attempt=2, downlink=False))  # heard during the outage
        a.local_change(0x0BADF00D, record(0x0BADF00D, b"\x33" * 16))  # provisioned meanwhile

        broker.start()
        assert wait(lambda: all(n.synced and len(n.members.live()) == 2 for n in (a, b, c)))
        for n in (b, c):
            # A's outage reception: via its buffered report or, if that went out before n
            # was back, A's retained digest
            assert wait(lambda n=n: n.state.highest(DEV, 1) >= 41), n.counters()
            assert n.peer_verdict(DEV, 1, 41, 2).verdict in (S.COPY, S.REPLAY)
            assert wait(lambda n=n: n.replica.get(0x0BADF00D) is not None)
            assert nodes.registry[n.gateway_id][-1].record.key == b"\x33" * 16
        owners = [n for n in (a, b, c) if n.owns_silence(DEV)]
        assert len(owners) == 1  # together again: one gateway reports DEV's silence

        # the broker lost its retained registry; the gateways put it back
        late = Plain(port, f"panic/cluster/{GROUP}/registry/#")
        assert wait(lambda: {t for t, _, r in late.got if r} == {
            a.topics.registry(DEV), a.topics.registry(0x0BADF00D)}), late.got
        late.close()
    finally:
        broker.stop()


def test_a_gateway_away_gets_what_it_missed_from_its_session(broker: Broker, nodes: Nodes
                                                             ) -> None:
    a, b, c = trio(nodes, broker.port)
    b.stop()
    assert wait(lambda: a.members.live() == {"gw-c"})
    a.report(rx(a, 300, incident="I-300"))
    back = nodes("gw-b", broker.port)  # same client id: the broker kept its session
    assert wait(lambda: back.peer_verdict(DEV, 1, 300, 0).verdict == S.COPY)
    assert back.peer_verdict(DEV, 1, 300, 0).incident == "I-300"
    assert wait(lambda: a.members.live() == {"gw-b", "gw-c"})


def test_a_killed_gateway_is_gone_by_its_signed_last_will(broker: Broker, nodes: Nodes
                                                          ) -> None:
    import subprocess
    import sys

    a = nodes("gw-a", broker.port)
    code = (
        "import sys, time\n"
        "sys.path.insert(0, 'tests')\n"
        "from cluster.conftest import settings, SECRET, GROUP\n"
        "from panicgw.cluster.crypto import GroupKeys\n"
        "from panicgw.cluster.node import ClusterNode\n"
        f"n = ClusterNode(settings('gw-z', {broker.port}), GroupKeys(SECRET, GROUP))\n"
        "n.start()\n"
        "while not n.synced: time.sleep(0.02)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=root)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
        assert wait(lambda: a.members.live() == {"gw-z"})
        devs = range(64)
        assert 0 < sum(a.owns_silence(d) for d in devs) < 64  # shared with gw-z
        proc.kill()  # no goodbye: the broker publishes the will, signed at connect time
        proc.wait(10)
        assert wait(lambda: a.members.live() == set())
        gone = {m["gateway"]: m for m in a.members.snapshot()}["gw-z"]
        assert gone["gone_reason"] == "connection lost"
        assert all(a.owns_silence(d) for d in devs)  # its devices come back to the rest
        assert a.codec.rejected[BAD_MAC] == 0
    finally:
        proc.kill()
