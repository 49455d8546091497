"""The TEST request in NVM (panictool verify -> firmware): taken once, never repeated, and
a torn write of the request or of its erasure never sends a TEST."""

from mp_test_button_fakes import CutNvm, PowerCut, unload


def test_request_round_trip_and_erased_when_taken():
    unload()
    from panicbutton import nvmstore

    nvm = CutNvm(64)
    assert nvmstore.take_remote_test(nvm) is None  # erased flash: no request
    rec = nvmstore.remote_test_record(0xBEEF)
    assert len(rec) == nvmstore.REMOTE_TEST_LEN
    nvm[nvmstore.REMOTE_TEST_AT:nvmstore.REMOTE_TEST_AT + len(rec)] = rec
    assert nvmstore.read_remote_test(nvm) == 0xBEEF
    writes = nvm.byte_writes
    assert nvmstore.take_remote_test(nvm) == 0xBEEF
    assert nvm.byte_writes == writes + nvmstore.REMOTE_TEST_LEN
    assert nvmstore.take_remote_test(nvm) is None  # a second boot sends nothing
    assert nvm.byte_writes == writes + nvmstore.REMOTE_TEST_LEN  # and writes nothing


def test_request_lives_beside_identity_and_epochs():
    unload()
    from panicbutton import nvmstore

    nvm = CutNvm(64)
    nvm[0:26] = nvmstore.identity_record(7, bytes(16))
    ep = nvmstore.EpochStore(nvm)
    ep.write(3)
    ep.write(4)
    at = nvmstore.REMOTE_TEST_AT
    nvm[at:at + 6] = nvmstore.remote_test_record(1)
    assert nvmstore.take_remote_test(nvm) == 1
    assert nvmstore.read_identity(nvm) == (7, bytes(16)) and ep.read() == 4


def test_torn_request_write_never_triggers():
    unload()
    from panicbutton import nvmstore

    rec = nvmstore.remote_test_record(0x1234)
    at = nvmstore.REMOTE_TEST_AT
    for cut in range(len(rec)):
        nvm = CutNvm(64, cut_after=cut)
        try:
            nvm[at:at + len(rec)] = rec
        except PowerCut:
            pass
        nvm.cut_after = None
        assert nvmstore.take_remote_test(nvm) is None, cut


def test_torn_erase_never_repeats_the_test():
    unload()
    from panicbutton import nvmstore

    at = nvmstore.REMOTE_TEST_AT
    for cut in range(1, nvmstore.REMOTE_TEST_LEN):
        nvm = CutNvm(64)
        nvm[at:at + 6] = nvmstore.remote_test_record(9)
        nvm.cut_after = nvm.byte_writes + cut  # power lost part-way through the erase
        try:
            nvmstore.take_remote_test(nvm)
        except PowerCut:
            pass
        nvm.cut_after = None
        assert nvmstore.take_remote_test(nvm) is None, cut


def test_erase_that_does_not_stick_sends_nothing():
    unload()
    from panicbutton import nvmstore

    class StuckNvm(CutNvm):
        def __setitem__(self, sl, value):
            pass  # worn flash: writes are lost

    nvm = StuckNvm(64)
    nvm.data[nvmstore.REMOTE_TEST_AT:nvmstore.REMOTE_TEST_AT + 6] = \
        nvmstore.remote_test_record(5)
    assert nvmstore.read_remote_test(nvm) == 5
    assert nvmstore.take_remote_test(nvm) is None  # would otherwise repeat every boot


def test_small_nvm_means_no_feature():
    unload()
    from panicbutton import nvmstore

    nvm = CutNvm(nvmstore.NVM_REMOTE_TEST_MIN - 1)
    assert nvmstore.read_remote_test(nvm) is None
    assert nvmstore.take_remote_test(nvm) is None and nvm.byte_writes == 0
