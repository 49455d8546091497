from mp_test_button_fakes import CutNvm, PowerCut

from panicbutton.counter import SEQ_LIMIT, Counter, CounterExhausted
from panicbutton.nvmstore import EpochStore, identity_record, read_identity


def test_identity_roundtrip_and_corruption():
    nvm = CutNvm()
    assert read_identity(nvm) is None
    nvm[0:26] = identity_record(7, bytes(16))
    assert read_identity(nvm) == (7, bytes(16))
    nvm[10:11] = b"\x01"
    assert read_identity(nvm) is None


def test_cold_boots_bump_epoch_once_each():
    nvm = CutNvm()
    store = EpochStore(nvm)
    seen = []
    for boot in range(3):
        c = Counter(store, bytearray(16))  # fresh sleep memory = power cycle
        assert c.boot() == boot + 1
        for _ in range(5):
            seen.append(c.next())
    assert store.writes == 3
    assert len(set(seen)) == len(seen)
    assert seen == sorted(seen)


def test_warm_restart_continues_without_nvm_write():
    nvm = CutNvm()
    store = EpochStore(nvm)
    mem = bytearray(16)
    c = Counter(store, mem)
    c.boot()
    a = [c.next() for _ in range(3)]
    c2 = Counter(store, mem)  # deep-sleep wake: sleep memory kept
    c2.boot()
    assert not c2.cold
    b = c2.next()
    assert b == a[-1] + 1
    assert store.writes == 1


def test_no_sleep_memory_means_every_boot_is_cold():
    store = EpochStore(CutNvm())
    c = Counter(store, None)
    c.boot()
    x = c.next()
    c = Counter(store, None)
    c.boot()
    assert c.next() > x
    assert store.writes == 2


def test_sequence_rollover_bumps_epoch():
    store = EpochStore(CutNvm())
    c = Counter(store, bytearray(16))
    c.boot()
    c.seq = SEQ_LIMIT - 1
    a = c.next()
    b = c.next()
    assert b > a and (b >> 16) == (a >> 16) + 1 and (b & 0xFFFF) == 0
    assert store.writes == 2


def test_exhausted_counter_raises():
    store = EpochStore(CutNvm())
    store.write(0xFFFF)
    c = Counter(store, bytearray(16))
    try:
        c.boot()
        raise AssertionError("should raise")
    except CounterExhausted:
        pass


def test_resync_moves_forward_only():
    store = EpochStore(CutNvm())
    c = Counter(store, bytearray(16))
    c.boot()
    c.next()
    assert not c.resync(0)
    assert c.resync((5 << 16) | 7)
    assert c.next() == (5 << 16) | 7
    assert store.read() == 5
    assert not c.resync((5 << 16) | 2)


def _life(nvm, mem_holder, used, script):
    """One boot then the script: 'n' next(), 'w' warm restart, 'c' cold restart."""
    store = EpochStore(nvm)
    c = Counter(store, mem_holder[0])
    c.boot()
    for op in script:
        if op == "n":
            used.append(c.next())
        elif op == "w":
            c = Counter(store, mem_holder[0])
            c.boot()
        else:
            mem_holder[0] = bytearray(16)
            c = Counter(store, mem_holder[0])
            c.boot()


def test_power_cut_at_every_nvm_byte_never_repeats():
    script = "nnwnncnnwnnc"
    clean = CutNvm()
    _life(clean, [bytearray(16)], [], script)
    total = clean.byte_writes
    assert total > 0
    for cut in range(total + 1):
        nvm = CutNvm(cut_after=cut)
        used = []
        mem = [bytearray(16)]
        try:
            _life(nvm, mem, used, script)
        except PowerCut:
            pass
        nvm.cut_after = None  # power back: RAM and sleep memory are gone
        mem = [bytearray(16)]
        _life(nvm, mem, used, script)
        assert len(set(used)) == len(used), cut
        assert used == sorted(used), cut


def test_zz_release():
    from mp_test_button_fakes import release

    release(globals())
