from panicbutton import power, report

ALARM = 1


def test_sleep_decisions():
    assert power.decide(0, True, None, None, 100, True) == ("poll", power.POLL_S)
    assert power.decide(0, False, None, 5.0, 100, True) == ("poll", power.POLL_S)
    assert power.decide(0, False, 10.0, None, 100, True) == ("nap", power.NAP_S)
    assert power.decide(0, False, 0.05, None, 100, True) == ("nap", 0.05)
    assert power.decide(0, False, None, None, 3600, True) == ("deep", 3600)
    assert power.decide(0, False, None, None, 3600, False) == ("light", 3600)
    assert power.decide(0, False, None, None, 1.0, True)[0] == "nap"


def test_heartbeat_survives_deep_sleep():
    mem = bytearray(64)
    hb = power.Heartbeat(3600, 0.0)
    hb.save(mem, 600.0, 100000)  # 3000 s left, wall clock 100000
    hb2 = power.Heartbeat(3600, 0.0)
    assert hb2.restore(mem, 0.0, 101000, False)  # pin wake 1000 s later
    assert hb2.next_at == 2000
    hb3 = power.Heartbeat(3600, 0.0)
    hb3.restore(mem, 0.0, 100500, True)  # timer wake: due now
    assert hb3.due(0.0)
    hb4 = power.Heartbeat(3600, 0.0)
    hb4.restore(mem, 0.0, 99000, False)  # clock went backwards: send early, not late
    assert hb4.due(0.0)
    assert not power.Heartbeat(3600, 0.0).restore(bytearray(64), 0.0, 0, False)


def test_report_line_roundtrip():
    line = report.line({"firmware": "0.1.0", "device_id": 5, "kind": ALARM})
    assert line.startswith("PANIC-BUTTON {")
    assert report.parse("noise\n" + line + "\n")["device_id"] == 5
    assert report.parse("PANIC-BUTTON {broken") is None


def test_zz_release():
    from mp_test_button_fakes import release

    release(globals())
