"""Bridge device logic under the 64 KB MicroPython heap: link handling, host away, garbage."""

from mp_test_button_fakes import unload


class _Serial:
    def __init__(self):
        self.connected = True
        self.inbox = b""
        self.out = b""

    @property
    def in_waiting(self):
        return len(self.inbox)

    def read(self, n):
        d = self.inbox[:n]
        self.inbox = self.inbox[n:]
        return d

    def write(self, b):
        self.out += b
        return len(b)


class _Radio:
    def __init__(self):
        self.rx = []
        self.sent = []
        self.last_rssi = -70
        self.last_snr = 6.25
        self.crc_error_count = 0
        self.rssi = -118

    def listen(self):
        pass

    def send(self, data, keep_listening=False):
        self.sent.append(bytes(data))
        return True

    def receive(self, timeout=None):
        return self.rx.pop(0) if self.rx else None


def _bridge():
    from panicbridge import config
    from panicbridge.bridge import Bridge

    s, r = _Serial(), _Radio()
    b = Bridge(r, s, lambda: 0.0, dict(config.DEFAULTS))
    return b, s, r


def test_ping_tx_and_garbage():
    unload()
    from panicproto import link

    b, s, r = _bridge()
    s.inbox = b"\x01\x02garbage\x00" + link.encode(link.PING, 3, b"hi") + \
        link.encode(link.TX, 4, b"D" * 18)
    b.step()
    msgs = link.Decoder().feed(s.out)
    assert msgs[0].kind == link.STATUS  # greeting on connect
    assert msgs[1].kind == link.PONG and msgs[1].seq == 3 and msgs[1].payload == b"hi"
    assert r.sent == [b"D" * 18] and b.decoder.errors and b.c["tx"] == 1


def test_rx_forwarded_with_rssi_snr():
    unload()
    from panicproto import link

    b, s, r = _bridge()
    b.step()
    s.out = b""
    r.rx.append(bytearray(b"U" * 19))
    b.step()
    frame, rssi, snr = link.parse_rx(link.Decoder().feed(s.out)[0].payload)
    assert frame == b"U" * 19 and rssi == -70 and snr == 6.25


def test_config_rejected():
    unload()
    from panicproto import link

    b, s, r = _bridge()
    s.inbox = link.encode(link.CONFIG, 5, b'{"sf": 13}') + link.encode(link.CONFIG, 6, b"[")
    b.step()
    kinds = [x.kind for x in link.Decoder().feed(s.out)]
    assert kinds == [link.STATUS, link.LOG, link.LOG] and b.c["config_rejected"] == 2
    assert b.cfg["sf"] == 9


def test_host_away_counts_dropped_and_keeps_running():
    unload()
    b, s, r = _bridge()
    s.connected = False
    r.rx.append(bytearray(b"U" * 19))
    b.step()
    b.step()
    assert b.c["dropped"] == 1 and b.c["rx"] == 1 and s.out == b""
    s.connected = True
    b.step()
    assert b.c["host_connects"] == 1 and s.out


def test_zz_release():
    from mp_test_button_fakes import release

    release(globals())
