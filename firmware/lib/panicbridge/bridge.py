"""LoRa bridge: radio frames to the host over the serial link, host downlinks to the air.

Holds no keys and never uses RadioHead's unauthenticated ACKs: it forwards bytes and the
gateway decides. Link replies (panicproto.link): PING -> PONG (same seq and payload);
STATUS request (empty payload) -> STATUS JSON (same seq); CONFIG JSON -> STATUS on success,
LOG "config rejected: ..." (same seq) on failure; TX -> transmitted at once (LOG on
radio failure). Radio frames go to the host as RX with RSSI and SNR. When the host is
not connected, frames are counted as dropped instead of blocking the loop.

``serial`` is ``usb_cdc.data``-like: connected, in_waiting, read(n), write(b).
``radio`` is an ``adafruit_rfm.rfm9x.RFM9x`` with ``radiohead = False`` (a packet is the
whole frame: 19-byte uplinks in, 18-byte downlinks out), or None when it failed at start.
The noise floor is the chip's current RSSI register (0x1B): the library's ``rssi``
property is the last packet's RSSI, not the channel's.
"""

import json

from panicbridge import FIRMWARE_VERSION, config
from panicproto import link

NOISE_EVERY_S = 1.0
REG_RSSI_VALUE = 0x1B  # SX127x current RSSI (LoRa mode); dBm = value - 157 (HF port)
HF_RSSI_OFFSET = 157
LF_RSSI_OFFSET = 164


def channel_rssi(radio):
    """Current RSSI of the channel in dBm (the noise floor while nothing is received)."""
    raw = radio.read_u8(REG_RSSI_VALUE)
    return raw - (LF_RSSI_OFFSET if radio.low_frequency_mode else HF_RSSI_OFFSET)


class Bridge:
    def __init__(self, radio, serial, monotonic, cfg, radio_error=None):
        self.radio = radio
        self.serial = serial
        self.monotonic = monotonic
        self.radio_error = radio_error
        self.decoder = link.Decoder()
        self.seq = 0
        self.started = monotonic()
        self.cfg = dict(config.DEFAULTS)
        self.c = {"rx": 0, "tx": 0, "tx_failed": 0, "dropped": 0, "host_messages": 0,
                  "configs": 0, "config_rejected": 0, "host_connects": 0, "unexpected": 0,
                  "loop_errors": 0}
        self.noise = None
        self._noise_at = -1e9
        self._connected = False
        self._crc_base = getattr(radio, "crc_error_count", 0) if radio else 0
        if radio is not None:
            self._apply(cfg)

    # -- radio ----------------------------------------------------------------------
    def _apply(self, cfg):
        r = self.radio
        r.frequency_mhz = cfg["frequency_mhz"]
        r.spreading_factor = cfg["sf"]
        r.signal_bandwidth = cfg["bw_hz"]
        r.coding_rate = cfg["cr"]
        r.tx_power = cfg["tx_power"]
        r.enable_crc = True
        self.cfg = dict(cfg)
        r.listen()

    def crc_errors(self):
        if self.radio is None:
            return 0
        return getattr(self.radio, "crc_error_count", 0) - self._crc_base

    def status(self):
        return {
            "firmware": FIRMWARE_VERSION,
            "uptime_s": int(self.monotonic() - self.started),
            "radio": dict(self.cfg) if self.radio is not None else None,
            "radio_error": self.radio_error,
            "counters": {
                "rx": self.c["rx"], "tx": self.c["tx"], "tx_failed": self.c["tx_failed"],
                "crc_errors": self.crc_errors(), "dropped": self.c["dropped"],
                "configs": self.c["configs"], "config_rejected": self.c["config_rejected"],
                "host_messages": self.c["host_messages"], "unexpected": self.c["unexpected"],
                "host_connects": self.c["host_connects"], "loop_errors": self.c["loop_errors"],
                "link_errors": self.decoder.errors, "link_dropped_bytes": self.decoder.dropped,
            },
            "noise_floor_dbm": self.noise,
        }

    # -- host -------------------------------------------------------------------------
    def _next_seq(self):
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    def _send(self, kind, payload, seq=None):
        """Write one link message; False (and counted as dropped) when the host is away."""
        if seq is None:
            seq = self._next_seq()
        if not self.serial.connected:
            self.c["dropped"] += 1
            return False
        try:
            self.serial.write(link.encode(kind, seq, payload))
            return True
        except Exception:  # host vanished mid-write (USB unplugged)
            self.c["dropped"] += 1
            return False

    def _status_bytes(self):
        s = self.status()
        b = json.dumps(s).encode()
        if len(b) > link.MAX_PAYLOAD:  # huge counters or a long error: keep what matters
            c = s["counters"]
            s["counters"] = {"rx": c["rx"], "tx": c["tx"], "truncated": True}
            if s["radio_error"]:
                s["radio_error"] = s["radio_error"][:100]
            b = json.dumps(s).encode()
        return b

    def _host(self):
        conn = self.serial.connected
        if conn and not self._connected:
            self.c["host_connects"] += 1
            self._connected = True
            self._send(link.STATUS, self._status_bytes())  # tell a new host who we are
        elif not conn:
            self._connected = False
        n = self.serial.in_waiting
        if not n:
            return
        data = self.serial.read(n)
        if not data:
            return
        for msg in self.decoder.feed(data):
            self.c["host_messages"] += 1
            self._handle(msg)

    def _handle(self, msg):
        if msg.kind == link.PING:
            self._send(link.PONG, msg.payload, msg.seq)
        elif msg.kind == link.STATUS:
            self._send(link.STATUS, self._status_bytes(), msg.seq)
        elif msg.kind == link.TX:
            self._transmit(msg)
        elif msg.kind == link.CONFIG:
            self._config(msg)
        else:
            self.c["unexpected"] += 1

    def _transmit(self, msg):
        if self.radio is None or not 0 < len(msg.payload) <= 252:
            self.c["tx_failed"] += 1
            self._send(link.LOG, b"tx failed: " + (b"no radio" if self.radio is None
                                                    else b"bad length"), msg.seq)
            return
        ok = False
        try:
            ok = self.radio.send(msg.payload, keep_listening=True)
        except Exception:
            ok = False
        if ok:
            self.c["tx"] += 1
        else:
            self.c["tx_failed"] += 1
            self._send(link.LOG, b"tx failed: radio timeout", msg.seq)

    def _config(self, msg):
        self.c["configs"] += 1
        try:
            change = config.check(json.loads(msg.payload))
            if self.radio is None:
                raise ValueError("no radio")
            cfg = dict(self.cfg)
            cfg.update(change)
            self._apply(cfg)
        except ValueError as e:  # json errors are ValueErrors too
            self.c["config_rejected"] += 1
            self._send(link.LOG, ("config rejected: %s" % e).encode(), msg.seq)
            return
        self._send(link.STATUS, self._status_bytes(), msg.seq)

    # -- loop -------------------------------------------------------------------------
    def step(self, rx_timeout=0.02):
        """One pass: host input, then at most one radio frame. Never raises."""
        try:
            self._host()
            if self.radio is None:
                return
            pkt = self.radio.receive(timeout=rx_timeout)
            if pkt is not None:
                self.c["rx"] += 1
                payload = link.rx_payload(bytes(pkt)[:link.MAX_RADIO], self.radio.last_rssi,
                                          self.radio.last_snr)
                self._send(link.RX, payload)
            else:
                now = self.monotonic()
                if now - self._noise_at >= NOISE_EVERY_S:
                    self._noise_at = now
                    self._sample_noise()
        except Exception:
            self.c["loop_errors"] += 1

    def _sample_noise(self):
        try:
            v = channel_rssi(self.radio)
        except Exception:
            return
        self.noise = v if self.noise is None else round(self.noise * 0.9 + v * 0.1, 1)


def main(hal):
    """Bridge entry point for code.py: never returns."""
    try:
        cfg = config.from_settings(hal.read_settings())
    except ValueError as e:
        hal.console("PANIC-BRIDGE ERROR %s (using defaults)" % e)
        cfg = dict(config.DEFAULTS)
    radio = None
    err = None
    try:
        radio = hal.radio(cfg)
    except Exception as e:
        err = str(e)
        hal.console("PANIC-BRIDGE ERROR radio: %s" % e)
    b = Bridge(radio, hal.serial, hal.monotonic, cfg, err)
    hal.console("PANIC-BRIDGE " + json.dumps(b.status()))
    while True:
        hal.feed()
        b.step()
        hal.led(b.c["rx"] & 1 == 1)
        if radio is None:
            hal.sleep(0.05)
