from panicbutton import boards, feedback


def test_board_table_lookup():
    name, p = boards.profile_for("adafruit_feather_rp2040_rfm")
    assert name == "feather_rp2040_rfm95" and p["rfm"] and not p["wifi"]
    name, p = boards.profile_for("adafruit_feather_esp32s3_nopsram")
    assert name == "feather_esp32s3" and p["wifi"] and p["rfm"] is None
    name, p = boards.profile_for("whatever", "feather_esp32s3_rfm95_wing")
    assert p["wifi"] and p["rfm"]
    for bad in (("nope", None), ("x", "nope")):
        try:
            boards.profile_for(bad[0], bad[1])
            raise AssertionError("accepted")
        except ValueError as e:
            assert "feather_rp2040_rfm95" in str(e)


def test_player_patterns():
    p = feedback.Player()
    p.play(feedback.TEST_OK, 0.0)
    assert p.update(0.03) and not p.update(0.1) and p.update(0.28)
    assert not p.update(0.4) and not p.busy()
    p.play(feedback.error_pattern(3), 0.0, repeat=True)
    ons = 0
    last = False
    for i in range(0, 3400, 10):
        on = p.update(i / 1000.0)
        if on and not last:
            ons += 1
        last = on
    assert ons == 3 and p.busy()


def test_zz_release():
    from mp_test_button_fakes import release

    release(globals())
