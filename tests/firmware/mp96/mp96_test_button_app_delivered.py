"""DELIVERED (contract C1), the ACK console line (C2), on-air length and airtime, and a new
supervision interval after a soft reload: the whole button app under MicroPython (and
CPython) with fake hardware."""

from mp96_fakes import FakeHal, ack_for, run_for, settings_lora
from mp_test_button_fakes import DEVICE_ID, KEY

from panicbutton import feedback, policy
from panicbutton.app import ButtonApp
from panicproto import airtime, frames


def _wifi_app(answer):
    """A Wi-Fi button whose gateway answers each ALARM frame with ``answer(n, frame)``
    (n = 0, 1, ...: how many alarm frames came before): an ACK status, or None (no ACK)."""
    hal = FakeHal(radio=False, wifi=True, settings=settings_lora(
        PB_WIFI_SSID="shop", PB_GATEWAY_URL="http://gw:8080"))
    seen = []

    def handler(body):
        up = frames.decode_uplink(body, KEY)
        if up.kind != frames.ALARM:
            return 200, ack_for(body)
        seen.append((hal.clock.t, up))
        status = answer(len(seen) - 1, up)
        if status is None:
            return 503, b""
        return 200, ack_for(body, status=status)

    hal.session.handler = handler
    app = ButtonApp(hal)
    assert app.boot()
    played = []
    real_play = app.player.play

    def play(pattern, now, repeat=False):
        played.append(pattern)
        real_play(pattern, now, repeat)

    app.player.play = play
    return hal, app, seen, played


def _ack_lines(hal, status):
    return [ln for ln in hal.lines if ln.startswith("PANIC-BUTTON ack: alarm ")
            and " status=" + str(status) + " " in ln]


def test_stored_then_delivered_plays_police_notified_once():
    hal, app, seen, played = _wifi_app(lambda n, up: frames.STORED if n < 2
                                       else frames.DELIVERED)
    hal.press(2.0)
    run_for(app, hal, 200)
    ups = [u for t, u in seen]
    assert len(ups) == 3 and len(set(u.counter for u in ups)) == 1
    assert [u.attempt for u in ups] == [0, 1, 2]  # same frame, next attempt number
    stored_at = seen[0][0]
    assert seen[1][0] - stored_at >= policy.CONFIRM_AT_S[0]  # never at the alarm cadence
    assert seen[2][0] - stored_at >= policy.CONFIRM_AT_S[1]
    assert played.count(feedback.POLICE_NOTIFIED) == 1 and feedback.STORED in played
    assert played.index(feedback.STORED) < played.index(feedback.POLICE_NOTIFIED)
    assert len(_ack_lines(hal, 1)) == 2 and len(_ack_lines(hal, 2)) == 1
    assert app.msgs.confirm.msg is None
    n = len(seen)
    run_for(app, hal, 900)
    assert len(seen) == n  # asking ended with DELIVERED


def test_stored_forever_stops_asking_and_never_claims_delivery():
    hal, app, seen, played = _wifi_app(lambda n, up: frames.STORED)
    hal.press(2.0)
    run_for(app, hal, 1200)
    stored_at = seen[0][0]
    asks = [t - stored_at for t, u in seen[1:]]
    assert len(asks) == len(policy.CONFIRM_AT_S) - 1  # bounded: 7 requests in 10 minutes
    for i in range(len(asks)):
        assert policy.CONFIRM_AT_S[i] <= asks[i] < policy.CONFIRM_AT_S[i] + 1.0
    assert asks[-1] < policy.CONFIRM_AT_S[-1]
    assert [u.attempt for t, u in seen] == list(range(len(seen)))
    assert feedback.POLICE_NOTIFIED not in played
    assert not _ack_lines(hal, 2) and app.msgs.confirm.msg is None
    assert [ln for ln in hal.lines if "delivery not confirmed" in ln and "stopped asking" in ln]
    # The duty-cycle share of requests is the non-alarm one (half the budget).
    assert policy.NON_ALARM_DUTY_SHARE < 1


def test_delivered_as_first_ack_is_accepted():
    hal, app, seen, played = _wifi_app(lambda n, up: frames.DELIVERED)
    hal.press(2.0)
    run_for(app, hal, 300)
    assert len(seen) == 1 and played.count(feedback.POLICE_NOTIFIED) == 1
    assert feedback.STORED not in played and app.msgs.confirm.msg is None
    assert app.msgs.acked[frames.ALARM] == 1


def test_no_ack_means_no_confirmation_requests_and_no_claim():
    hal, app, seen, played = _wifi_app(lambda n, up: None)
    hal.press(2.0)
    run_for(app, hal, 60)
    assert app.msgs.confirm.msg is None and app.msgs.outbox.find_kind(frames.ALARM) is not None
    assert feedback.POLICE_NOTIFIED not in played and feedback.STORED not in played


def test_lora_ack_line_airtime_and_duty_from_19_bytes():
    hal = FakeHal()
    hal.fake_radio.reply = ack_for
    hal.fake_radio.last_rssi = -104
    hal.fake_radio.last_snr = -7.25
    app = ButtonApp(hal)
    assert app.boot()
    hal.press(2.0)
    run_for(app, hal, 5)
    sf, frame = hal.fake_radio.sent[0]
    assert len(frame) == frames.UPLINK_LEN == 19
    down = ack_for(frame)
    line = [ln for ln in hal.lines if ln.startswith("PANIC-BUTTON ack: alarm ")][0]
    up = frames.decode_uplink(frame, KEY)
    assert line == ("PANIC-BUTTON ack: alarm counter=" + str(up.counter) + " status=1 via lora"
                    " rssi=-104 snr=-7.2 sf=" + str(sf) + " down=" + down.hex())
    # Airtime the firmware budgets: the 19-byte packet at the configured bandwidth.
    used = app.msgs.sender.lora.duty.used_ms(hal.clock.t)
    assert abs(used - airtime.time_on_air_ms(19, sf, 125000)) < 0.01


def test_ack_line_over_wifi_has_no_radio_values():
    hal, app, seen, played = _wifi_app(lambda n, up: frames.STORED)
    hal.press(2.0)
    run_for(app, hal, 5)
    line = _ack_lines(hal, 1)[0]
    up = seen[0][1]
    assert line.startswith("PANIC-BUTTON ack: alarm counter=" + str(up.counter)
                           + " status=1 via wifi ")
    assert line.endswith(" rssi=- snr=- sf=- down=" + ack_for(
        frames.encode_uplink(KEY, up), status=1).hex())
    assert up.device_id == DEVICE_ID


class _Slept(Exception):
    pass


def test_new_supervision_interval_applies_after_soft_reload():
    hal = FakeHal(settings=settings_lora(PB_SUPERVISION_S="3600"))
    hal.fake_radio.reply = ack_for
    app = ButtonApp(hal)
    assert app.boot()

    def deep_sleep(s):  # a deep sleep ends code.py; the schedule is in sleep memory
        hal.deep_sleeps.append(s)
        if s > 3000:
            raise _Slept()
        hal.clock.sleep(s)

    hal.deep_sleep = deep_sleep
    try:
        run_for(app, hal, 60)  # first heartbeat 5 s after the cold boot, then deep sleep
    except _Slept:
        pass
    assert hal.deep_sleeps and max(hal.deep_sleeps) > 3000
    hal.clock.sleep(30)  # re-provisioned half a minute later
    hal.settings = settings_lora(PB_SUPERVISION_S="60")  # settings.toml rewritten
    n = len(hal.fake_radio.sent)
    app = ButtonApp(hal)  # soft reload: RAM gone, sleep memory kept, not a wake
    assert app.boot()
    assert not app.msgs.counter.cold
    run_for(app, hal, 60)
    beats = [frames.decode_uplink(f, KEY) for sf, f in hal.fake_radio.sent[n:]]
    assert [u for u in beats if u.kind == frames.HEARTBEAT]
    assert app.heartbeat.next_at - hal.clock.t <= 60
