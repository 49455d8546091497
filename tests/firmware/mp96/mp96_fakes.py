"""Fakes for the whole-app tests under MicroPython (96 KB heap) and CPython."""

from mp_test_button_fakes import DEVICE_ID, KEY, Clock, CutNvm, Rand

from panicbutton.nvmstore import identity_record


class FakeRadio:
    def __init__(self, clock):
        self.clock = clock
        self.sent = []  # (sf, bytes)
        self.inbox = []  # packets to return from receive()
        self.frequency_mhz = 915.0
        self.spreading_factor = 7
        self.signal_bandwidth = 125000
        self.coding_rate = 5
        self.tx_power = 13
        self.enable_crc = True
        self.last_rssi = -60
        self.last_snr = 7.5
        self.crc_error_count = 0
        self.reply = None  # function(frame) -> downlink bytes or None, queued on send

    def send(self, data, keep_listening=False):
        self.sent.append((self.spreading_factor, bytes(data)))
        if self.reply is not None:
            r = self.reply(bytes(data))
            if r is not None:
                self.inbox.append(r)
        return True

    def listen(self):
        pass

    def receive(self, timeout=None, keep_listening=True, with_header=False):
        if self.inbox:
            return bytearray(self.inbox.pop(0))
        if timeout:
            self.clock.sleep(timeout)
        return None


class FakeResponse:
    def __init__(self, status, body):
        self.status_code = status
        self.content = body
        self.closed = False

    def close(self):
        self.closed = True


class FakeSession:
    def __init__(self, handler):
        self.handler = handler  # function(body) -> (status, bytes)
        self.posts = []

    def post(self, url, data=None, headers=None, timeout=None):
        self.posts.append((url, bytes(data), headers))
        status, body = self.handler(bytes(data))
        if status is None:
            raise OSError(113)  # unreachable
        return FakeResponse(status, body)


def ack_for(frame, key=KEY, status=1):
    from panicproto import frames

    up = frames.decode_uplink(frame, key)
    return frames.encode_downlink(key, frames.Downlink(frames.ACK, up.device_id, up.counter,
                                                        status))


def settings_lora(**kw):
    s = {"PB_REGION": "AS923-2", "PB_SF": 9}
    for k in kw:
        s[k] = kw[k]
    return s


class FakeHal:
    def __init__(self, settings=None, radio=True, wifi=False, provisioned=True, deep=True):
        self.clock = Clock()
        self.board_name = "fake"
        self.has_radio = radio
        self.has_wifi = wifi
        self.deep_sleep_ok = deep
        self.wake = None
        self.nvm = CutNvm(256)
        if provisioned:
            self.nvm[0:26] = identity_record(DEVICE_ID, KEY)
        self.sleep_memory = bytearray(64)
        self.settings = settings if settings is not None else settings_lora()
        self.rand = Rand()
        self.lines = []
        self.led_on = False
        self.pending_events = []
        self.down = False
        self.tamper = None
        self.battery = 3900
        self.fake_radio = FakeRadio(self.clock)
        self.radio_fails = False
        self.session = FakeSession(lambda body: (None, b""))
        self.deep_sleeps = []
        self.light_sleeps = []
        self.feeds = 0

    def monotonic(self):
        return self.clock.t

    def wall_time(self):
        return int(self.clock.t)

    def sleep(self, s):
        self.clock.sleep(s)

    def read_settings(self):
        return self.settings

    def press(self, seconds):
        """Queue a press of ``seconds`` starting now (events arrive on the next step)."""
        self.pending_events.append((True, self.clock.t))
        self.down = True
        self._release_at = self.clock.t + seconds

    def button_events(self):
        out = []
        for e in self.pending_events:
            if e[1] <= self.clock.t:
                out.append(e)
        for e in out:
            self.pending_events.remove(e)
        if self.down and self.clock.t >= self._release_at:
            self.down = False
            out.append((False, self._release_at))
        return out

    def button_is_down(self):
        return self.down

    def tamper_open(self):
        return self.tamper

    def battery_mv(self):
        return self.battery

    def led(self, on):
        self.led_on = on

    def feed(self):
        self.feeds += 1

    def radio(self, settings):
        if self.radio_fails:
            raise RuntimeError("Failed to find rfm9x with expected version -- check wiring")
        return self.fake_radio

    def wifi_session(self, settings):
        return self.session

    def deep_sleep(self, s):
        self.deep_sleeps.append(s)
        self.clock.sleep(s)

    def light_sleep(self, s):
        self.light_sleeps.append(s)
        self.clock.sleep(s)

    def console(self, text):
        self.lines.append(text)


def run_for(app, hal, seconds, max_steps=100000):
    end = hal.clock.t + seconds
    n = 0
    while hal.clock.t < end and n < max_steps:
        app.step()
        n += 1
    return n


