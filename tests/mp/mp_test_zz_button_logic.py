"""Compact device-logic checks, one or two per button module, for the 64 KB heap run.

The full suites are tests/firmware/mp96/ (run under MicroPython with a 96 KB heap and
under CPython by tests/firmware/test_micropython.py).
"""

from mp_test_button_fakes import CutNvm, PowerCut, Rand, unload


def test_classifier():
    unload()
    from panicbutton.classifier import Classifier

    c = Classifier(hold_s=1.5)
    c.feed(True, 0.0)
    assert c.update(1.4) is None and c.update(1.5) == 1
    c.feed(False, 2.0)
    for i in range(5):
        c.feed(True, 10 + i * 0.4)
        c.feed(False, 10.1 + i * 0.4)
    assert c.update(12.0) is None and c.update(13.0) == 4


def test_counter_power_cuts():
    unload()
    from panicbutton.counter import Counter
    from panicbutton.nvmstore import EpochStore

    used = []
    for cut in range(12):
        nvm = CutNvm(cut_after=cut)
        for _ in range(2):
            try:
                c = Counter(EpochStore(nvm), bytearray(16))
                c.boot()
                used.append(c.next())
                used.append(c.next())
            except PowerCut:
                pass
            nvm.cut_after = None
        assert used == sorted(used) and len(set(used)) == len(used)
        used = []


def test_policy_and_duty():
    unload()
    from panicbutton import policy
    from panicproto import airtime

    box = policy.Outbox(Rand((0.5,)))
    m = box.add(policy.Message(1, 7, 0.0))
    now = 0.0
    for _ in range(8):
        box.sent(m, now)
        now = m.next_due
    assert now == 1 + 2 + 4 + 8 + 16 + 32 + 60 + 60
    r = airtime.region("AS923-2")
    assert policy.sf_ladder(r, 9, 12, 23) == [9, 10]
    d = airtime.DutyCycle(0.01)
    d.record(0, 35800)
    assert policy.choose_sf([9, 10], 1, 1, d, 0, 23)[0] is None


def test_settings_and_boards():
    unload()
    from panicbutton import boards
    from panicbutton.settings import SettingsError, parse

    assert parse({"PB_REGION": "AS923-2"}).sf_max == 10
    try:
        parse({"PB_REGION": "AS923-2", "PB_SF": "x"})
        raise AssertionError("accepted")
    except SettingsError as e:
        assert e.key == "PB_SF"
    assert boards.profile_for("adafruit_feather_rp2040_rfm")[0] == "feather_rp2040_rfm95"


def test_power_feedback_report():
    unload()
    from panicbutton import feedback, power, report

    assert power.decide(0, False, None, None, 3600, True) == ("deep", 3600)
    p = feedback.Player()
    p.play(feedback.STORED, 0.0)
    assert p.update(0.01) and not p.update(0.1)
    assert report.parse(report.line({"a": 1})) == {"a": 1}


def test_downlink_and_transports():
    unload()
    from mp_test_button_fakes import DEVICE_ID, KEY

    from panicbutton.downlink import Verifier
    from panicbutton.transport_wifi import WifiPath
    from panicproto import frames

    v = Verifier(KEY, DEVICE_ID)
    good = frames.encode_downlink(KEY, frames.Downlink(frames.ACK, DEVICE_ID, 5, 1))
    assert v.check(good).counter == 5
    assert v.check(good[:-1]) is None and v.check(b"\x00" * 18) is None
    assert v.rejects == {"short": 1, "bad_version": 1}

    class R:
        status_code = 200
        content = good

        def close(self):
            pass

    class S:
        def post(self, url, data=None, headers=None, timeout=None):
            return R()

    assert WifiPath(lambda: S(), "http://g").exchange(b"x" * 19) == good
    assert WifiPath(lambda: None, "http://g").exchange(b"x") is None


def test_zz_release():
    from mp_test_button_fakes import release

    release(globals())
