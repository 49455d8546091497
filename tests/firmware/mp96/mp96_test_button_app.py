from mp96_fakes import FakeHal, FakeSession, ack_for, run_for, settings_lora
from mp_test_button_fakes import (
    DEVICE_ID,
    KEY,
    OTHER_KEY,
)

from panicbutton import feedback, nvmstore, policy, report
from panicbutton.app import ButtonApp
from panicproto import frames


def _booted(**kw):
    hal = FakeHal(**kw)
    app = ButtonApp(hal)
    assert app.boot()
    return hal, app


def _report(hal):
    return report.parse("\n".join(hal.lines))


def test_boot_report():
    hal, app = _booted()
    r = _report(hal)
    assert r["device_id"] == DEVICE_ID and r["epoch"] == 1 and r["radio"] == "ok"
    assert r["paths"] == ["lora"] and r["firmware"] and r["cold_boot"]


def test_alarm_on_both_paths_same_counter_until_ack():
    hal, app = _booted(wifi=True, settings=settings_lora(
        PB_WIFI_SSID="shop", PB_GATEWAY_URL="http://gw:8080"))
    hal.session.handler = lambda body: (503, b"")
    hal.press(2.0)
    run_for(app, hal, 10)
    lora = [frames.decode_uplink(f, KEY) for sf, f in hal.fake_radio.sent]
    wifi = [frames.decode_uplink(p[1], KEY) for p in hal.session.posts]
    alarms_l = [u for u in lora if u.kind == frames.ALARM]
    alarms_w = [u for u in wifi if u.kind == frames.ALARM]
    assert len(alarms_l) >= 3 and len(alarms_w) == len(alarms_l)
    assert len(set(u.counter for u in alarms_l + alarms_w)) == 1
    assert [u.attempt for u in alarms_l][:3] == [0, 1, 2]
    assert all(u.wifi for u in alarms_w) and not any(u.wifi for u in alarms_l)
    assert hal.session.posts[0][0] == "http://gw:8080/v1/frames"
    assert hal.session.posts[0][2]["Content-Type"] == "application/octet-stream"
    hal.session.handler = lambda body: (200, ack_for(body))
    run_for(app, hal, 70)
    assert app.msgs.outbox.find_kind(frames.ALARM) is None
    assert app.msgs.acked[frames.ALARM] == 1
    n = len(hal.session.posts)
    run_for(app, hal, 14)  # STORED: no alarm-cadence retries; the first request at 15 s
    assert len([p for p in hal.session.posts[n:]
                if frames.decode_uplink(p[1]).kind == frames.ALARM]) == 0


def test_lora_ack_and_led_confirmation():
    hal, app = _booted()
    hal.fake_radio.reply = ack_for
    hal.press(1.6)
    seen_led = False
    for _ in range(200):
        app.step()
        seen_led = seen_led or hal.led_on
    assert app.msgs.acked.get(frames.ALARM) == 1 and seen_led
    kinds = [frames.decode_uplink(f, KEY).kind for sf, f in hal.fake_radio.sent]
    assert kinds.count(frames.ALARM) == 1


def test_forged_mismatched_and_wrong_length_downlinks_ignored():
    hal, app = _booted()
    hal.press(1.6)
    run_for(app, hal, 1.7)
    up = frames.decode_uplink(hal.fake_radio.sent[0][1], KEY)
    good = frames.encode_downlink(KEY, frames.Downlink(frames.ACK, DEVICE_ID, up.counter, 1))
    forged = frames.encode_downlink(OTHER_KEY, frames.Downlink(frames.ACK, DEVICE_ID,
                                                               up.counter, 1))
    other_counter = frames.encode_downlink(KEY, frames.Downlink(frames.ACK, DEVICE_ID,
                                                                up.counter + 5, 1))
    other_dev = frames.encode_downlink(KEY, frames.Downlink(frames.ACK, DEVICE_ID + 1,
                                                            up.counter, 1))
    flipped = bytearray(good)
    flipped[-1] ^= 1
    junk = [forged, other_counter, other_dev, bytes(flipped), good[:-1], good + b"\x00",
            b"", b"\xff" * 18, bytes(200), hal.fake_radio.sent[0][1]]
    for j in junk:
        app.msgs.sender.rx_until = hal.clock.t + 1
        hal.fake_radio.inbox.append(j)
        app.step()
    assert app.msgs.outbox.find_kind(frames.ALARM) is not None
    rej = app.msgs.verifier.rejects
    assert rej.get("bad_tag", 0) >= 2 and rej.get("short") and rej.get("long")
    assert rej.get("unmatched") == 1 and rej.get("other_device") == 1
    assert app.loop_errors == 0
    app.msgs.sender.rx_until = hal.clock.t + 1
    hal.fake_radio.inbox.append(good)
    app.step()
    assert app.msgs.outbox.find_kind(frames.ALARM) is None


def test_resync_moves_counter_and_resends():
    hal, app = _booted()
    hal.press(1.6)
    run_for(app, hal, 1.7)
    old = frames.decode_uplink(hal.fake_radio.sent[-1][1], KEY).counter
    target = (9 << 16) | 3
    app.msgs.sender.rx_until = hal.clock.t + 1
    hal.fake_radio.inbox.append(frames.encode_downlink(
        KEY, frames.Downlink(frames.RESYNC, DEVICE_ID, target, 0)))
    hal.fake_radio.reply = ack_for
    run_for(app, hal, 1)
    counters = [frames.decode_uplink(f, KEY).counter for sf, f in hal.fake_radio.sent]
    assert counters[0] == old and counters[-1] == target
    assert app.msgs.acked.get(frames.ALARM) == 1
    # a replayed (older) RESYNC does not move the counter back
    assert not app.msgs.counter.resync(old)


def test_test_pattern_sends_test_and_heartbeat_is_scheduled():
    hal, app = _booted()
    hal.fake_radio.reply = ack_for
    run_for(app, hal, 6)  # first heartbeat 5 s after a cold boot
    kinds = [frames.decode_uplink(f, KEY).kind for sf, f in hal.fake_radio.sent]
    assert kinds == [frames.HEARTBEAT]
    t = hal.clock.t
    for i in range(5):
        hal.pending_events.append((True, t + i * 0.4))
        hal.pending_events.append((False, t + i * 0.4 + 0.1))
    run_for(app, hal, 4)
    kinds = [frames.decode_uplink(f, KEY).kind for sf, f in hal.fake_radio.sent]
    assert kinds[0] == frames.HEARTBEAT and kinds[-1] == frames.TEST
    assert kinds.count(frames.TEST) == 1
    up = frames.decode_uplink(hal.fake_radio.sent[0][1], KEY)
    assert up.battery_mv == 3900 and not up.low_battery
    # idle afterwards: the device sleeps until the next heartbeat
    run_for(app, hal, 5)
    assert hal.deep_sleeps and max(hal.deep_sleeps) > 3000


def test_heartbeat_deferred_during_alarm():
    hal, app = _booted()
    hal.press(1.6)
    run_for(app, hal, 30)
    kinds = [frames.decode_uplink(f, KEY).kind for sf, f in hal.fake_radio.sent]
    assert frames.HEARTBEAT not in kinds and kinds.count(frames.ALARM) >= 4
    hal.fake_radio.reply = ack_for
    run_for(app, hal, 70)
    kinds = [frames.decode_uplink(f, KEY).kind for sf, f in hal.fake_radio.sent]
    assert frames.HEARTBEAT in kinds


def test_loop_rests_while_a_heartbeat_waits_behind_an_alarm():
    hal, app = _booted()
    run_for(app, hal, 6)  # the first heartbeat goes out, unanswered: it waits for a retry
    assert app.msgs.outbox.find_kind(frames.HEARTBEAT) is not None
    hal.press(1.6)
    run_for(app, hal, 2)  # the alarm goes out; the heartbeat is held back behind it
    steps = run_for(app, hal, 30)  # receive windows poll at 20 ms, waits nap at 100 ms
    assert steps < 2000 and app.msgs.outbox.find_kind(frames.ALARM) is not None
    confirming = FakeHal()  # a STORED alarm asking for DELIVERED behind a new alarm
    app = ButtonApp(confirming)
    assert app.boot()
    first = []

    def reply(frame):  # STORED for the first alarm only
        up = frames.decode_uplink(frame, KEY)
        if up.kind == frames.ALARM and (not first or first[0] == up.counter):
            first.append(up.counter)
            return ack_for(frame)
        return None

    confirming.fake_radio.reply = reply
    confirming.press(1.6)
    run_for(app, confirming, 3)
    assert app.msgs.confirm.msg is not None
    confirming.press(1.6)  # a new alarm, never answered
    run_for(app, confirming, 3)
    assert run_for(app, confirming, 60) < 4000 and app.msgs.confirm.msg is not None


def test_no_confirmation_pattern_after_first_retries():
    hal, app = _booted()
    played = []
    real_play = app.player.play

    def play(pattern, now, repeat=False):
        played.append((pattern, app.msgs.outbox.find_kind(frames.ALARM).attempts))
        real_play(pattern, now, repeat)

    app.player.play = play
    hal.press(1.6)
    run_for(app, hal, 20)
    assert app.msgs.outbox.find_kind(frames.ALARM) is not None  # still unacknowledged
    assert played == [(feedback.NO_CONFIRM, policy.NO_CONFIRM_AFTER)]  # once, discreetly


def test_low_battery_and_tamper_flags():
    hal, app = _booted()
    hal.battery = 3300
    hal.tamper = False
    app.msgs.sender.mv_at = -1e9
    run_for(app, hal, 1)
    hal.tamper = True
    run_for(app, hal, 1)
    ups = [frames.decode_uplink(f, KEY) for sf, f in hal.fake_radio.sent]
    assert ups[0].kind == frames.TAMPER and ups[0].tamper and ups[0].low_battery


def test_garbage_radio_packets_never_crash():
    hal, app = _booted()
    seed = 7
    for _ in range(60):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        pkt = bytes((seed >> (i % 24)) & 0xFF for i in range(seed % 40))
        app.msgs.sender.rx_until = hal.clock.t + 1
        hal.fake_radio.inbox.append(pkt)
        app.step()
    assert app.loop_errors == 0 and sum(app.msgs.verifier.rejects.values()) == 60


def test_malformed_settings_give_error_code_not_crash():
    hal = FakeHal(settings={"PB_REGION": "AS923-2", "PB_SF": "twelve"})
    app = ButtonApp(hal)
    assert not app.boot()
    assert app.error.code == feedback.ERROR_SETTINGS
    assert any("PB_SF" in ln for ln in hal.lines)
    r = _report(hal)
    assert r["error"]["name"] == "settings"
    hal.press(2)
    blinks = 0
    last = False
    for _ in range(200):
        app.step()
        if hal.led_on and not last:
            blinks += 1
        last = hal.led_on
    assert blinks >= 2 and hal.fake_radio.sent == []


def test_unprovisioned_and_radio_failures():
    hal = FakeHal(provisioned=False)
    app = ButtonApp(hal)
    assert not app.boot() and app.error.code == feedback.ERROR_NOT_PROVISIONED
    hal = FakeHal()
    hal.radio_fails = True
    app = ButtonApp(hal)
    assert not app.boot() and app.error.code == feedback.ERROR_RADIO
    hal = FakeHal(wifi=True, settings=settings_lora(PB_WIFI_SSID="s", PB_GATEWAY_URL="http://g"))
    hal.radio_fails = True
    app = ButtonApp(hal)
    assert app.boot()  # Wi-Fi still works: degrade, do not stop
    assert _report(hal)["paths"] == ["wifi"]


def test_wifi_errors_are_retried_not_fatal():
    hal, app = _booted(radio=False, wifi=True, settings=settings_lora(
        PB_WIFI_SSID="shop", PB_GATEWAY_URL="http://gw"))
    hal.session = FakeSession(lambda body: (None, b""))
    hal.press(1.6)
    run_for(app, hal, 10)
    assert app.msgs.sender.wifi.errors.get("network", 0) >= 3
    hal.session.handler = lambda body: (200, b"\x01\x02")  # wrong length
    run_for(app, hal, 40)
    assert app.msgs.verifier.rejects.get("short", 0) >= 1
    assert app.msgs.outbox.find_kind(frames.ALARM) is not None and app.loop_errors == 0


def _request_test(hal, nonce):
    at = nvmstore.REMOTE_TEST_AT
    hal.nvm[at:at + nvmstore.REMOTE_TEST_LEN] = nvmstore.remote_test_record(nonce)


def test_remote_test_request_sends_one_test_like_the_click_pattern():
    hal = FakeHal()
    _request_test(hal, 0x4242)
    hal.fake_radio.reply = ack_for
    app = ButtonApp(hal)
    assert app.boot()
    assert _report(hal)["remote_test"] == 0x4242
    assert nvmstore.read_remote_test(hal.nvm) is None  # erased before anything is sent
    press = [i for i, ln in enumerate(hal.lines) if ln.startswith("PANIC-BUTTON press: test")]
    rep = [i for i, ln in enumerate(hal.lines) if ln.startswith("PANIC-BUTTON {")]
    assert len(press) == 1 and rep[0] < press[0]  # after the report the tool reads first
    counter = int(hal.lines[press[0]].split("counter=")[1])
    run_for(app, hal, 4)
    ups = [frames.decode_uplink(f, KEY) for sf, f in hal.fake_radio.sent]
    assert [(u.kind, u.counter) for u in ups] == [(frames.TEST, counter)]
    head = "PANIC-BUTTON ack: test counter=" + str(counter) + " status=1 via lora "
    assert len([ln for ln in hal.lines if ln.startswith(head)]) == 1
    # A reboot (soft reload, watchdog reset, crash loop) never sends it again.
    hal.lines = []
    app = ButtonApp(hal)
    assert app.boot()
    assert _report(hal)["remote_test"] is None
    assert not [ln for ln in hal.lines if "press: test" in ln]


def test_remote_test_unanswered_retries_like_a_test_press():
    hal = FakeHal()
    _request_test(hal, 1)
    app = ButtonApp(hal)
    assert app.boot()
    run_for(app, hal, 400)
    kinds = [frames.decode_uplink(f, KEY).kind for sf, f in hal.fake_radio.sent]
    assert kinds.count(frames.TEST) == policy.MAX_ATTEMPTS[frames.TEST]
    assert "PANIC-BUTTON test not confirmed after 8 attempts" in hal.lines


def test_remote_test_request_consumed_but_not_sent_on_config_error():
    hal = FakeHal(provisioned=False)
    _request_test(hal, 7)
    app = ButtonApp(hal)
    assert not app.boot()
    assert _report(hal)["remote_test"] == 7 and "error" in _report(hal)
    assert not [ln for ln in hal.lines if "press: test" in ln]
    assert nvmstore.read_remote_test(hal.nvm) is None
