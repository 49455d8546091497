"""The group's registry: the newest generation wins, whatever order entries arrive in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from panicgw.cluster import registry_replica as R
from panicgw.cluster.crypto import GroupKeys
from panicgw.cluster.messages import Codec, RegistryEntry
from panicgw.registry import KeyConflictError

from .conftest import GROUP, SECRET, record

DEV = 0x1234ABCD
CODEC = {gw: Codec(GroupKeys(SECRET, GROUP), gw) for gw in ("gw-a", "gw-b", "gw-c")}


def entry(gen: int, gw: str = "gw-a", key_gen: int = 1, key: bytes = bytes(16),
          remove: bool = False, address: str = "Jl. Merdeka 12") -> RegistryEntry:
    rec = None if remove else record(DEV, key, key_gen, address)
    return CODEC[gw].registry_entry(rec, DEV, gen)


def test_older_generation_never_overwrites_equal_is_idempotent() -> None:
    r = R.RegistryReplica()
    assert r.apply(entry(2, key_gen=2, key=b"\x02" * 16)) == R.APPLIED
    assert r.apply(entry(1, key_gen=1, key=b"\x01" * 16)) == R.STALE
    assert r.get(DEV).record.key == b"\x02" * 16
    assert r.apply(entry(2, key_gen=2, key=b"\x02" * 16)) == R.SAME
    assert r.apply(entry(3, remove=True)) == R.APPLIED
    assert r.records() == {} and r.next_gen(DEV) == 4
    assert r.apply(entry(2, key_gen=2, key=b"\x02" * 16)) == R.STALE  # no resurrection
    assert r.stats == {R.APPLIED: 2, R.STALE: 2, R.SAME: 1}


def test_same_generation_conflict_has_one_winner_everywhere() -> None:
    a = entry(5, "gw-a", address="A street")
    c = entry(5, "gw-c", address="C street")
    one, two = R.RegistryReplica(), R.RegistryReplica()
    one.apply(a)
    one.apply(c)
    two.apply(c)
    two.apply(a)
    assert one.get(DEV) == two.get(DEV)
    assert one.stats["conflicts_seen"] == 1


def test_local_change_guard() -> None:
    r = R.RegistryReplica()
    assert r.check_local(record(DEV, b"\x02" * 16, 2), DEV)  # nothing known yet
    r.apply(entry(4, key_gen=2, key=b"\x02" * 16, address="Jl. Merdeka 12, Bandung"))
    # an echo of what came from the group: not published again
    assert not r.check_local(record(DEV, b"\x02" * 16, 2), DEV)
    # an old export (older key generation) imported here
    with pytest.raises(KeyConflictError):
        r.check_local(record(DEV, b"\x01" * 16, 1), DEV)
    assert r.check_local(record(DEV, b"\x01" * 16, 1), DEV, allow_older_key=True)
    assert r.check_local(record(DEV, b"\x03" * 16, 3), DEV)  # a rekey
    assert r.check_local(record(DEV, b"\x02" * 16, 2, "New address"), DEV)  # a site edit
    assert r.check_local(None, DEV)
    r.apply(entry(5, remove=True))
    assert not r.check_local(None, DEV)
    assert r.check_local(record(DEV, b"\x01" * 16, 1), DEV)  # provisioned anew after removal


def test_missing_on_broker_lists_what_to_republish() -> None:
    r = R.RegistryReplica()
    e = entry(3)
    out = CODEC["gw-a"].encode(e)
    r.apply(e, out.payload)
    r.forget_broker()
    assert r.missing_on_broker() == [(DEV, out.payload)]
    r.seen_on_broker(DEV, 2)
    assert r.missing_on_broker() == [(DEV, out.payload)]
    r.seen_on_broker(DEV, 3)
    assert r.missing_on_broker() == []


entries = st.lists(
    st.builds(entry, st.integers(1, 6), st.sampled_from(["gw-a", "gw-b", "gw-c"]),
              st.integers(1, 3), st.sampled_from([b"\x01" * 16, b"\x02" * 16]),
              st.booleans(), st.sampled_from(["A", "B"])),
    min_size=1, max_size=12)


@given(entries, st.data())
def test_any_arrival_order_converges_on_the_newest(es: list[RegistryEntry],
                                                   data: st.DataObject) -> None:
    finals = []
    for _ in range(3):  # three gateways, each its own order, some entries twice
        order = data.draw(st.permutations(es))
        extra = data.draw(st.lists(st.sampled_from(es), max_size=4))
        r = R.RegistryReplica()
        for e in [*order, *extra]:
            r.apply(e)
        finals.append(r.get(DEV))
    # the same entry everywhere (its sealed bytes may be either copy of an equal one)
    assert R.version(finals[0]) == R.version(finals[1]) == R.version(finals[2])
    assert finals[0].gen == max(e.gen for e in es)  # a stale generation never wins
    assert R.version(finals[0]) == max(R.version(e) for e in es)


@given(entries)
def test_never_goes_back_a_generation(es: list[RegistryEntry]) -> None:
    r = R.RegistryReplica()
    top = 0
    for e in es:
        r.apply(e)
        assert r.get(DEV).gen >= top
        top = r.get(DEV).gen
