"""The subset of ``adafruit_rfm9x.RFM9x`` the firmware uses, backed by the virtual air."""

import threading

RH_HEADER = b"\xff\xff\x00\x00"  # to, from, id, flags: broadcast, as adafruit_rfm9x sends


class SimRFM9x:
    def __init__(self, air, board, name: str, frequency: float) -> None:
        self.air = air
        self.board = board
        self.name = name
        self.frequency_mhz = float(frequency)
        self.spreading_factor = 7
        self.signal_bandwidth = 125000
        self.coding_rate = 5
        self.tx_power = 13
        self.enable_crc = True
        self.preamble_length = 8
        self.last_rssi = 0.0
        self.last_snr = 0.0
        self.crc_error_count = 0
        self.node = 255
        self.destination = 255
        self.xmit_timeout = 2.0
        self.receive_timeout = 0.5
        self._lock = threading.Lock()
        self._pending: list = []  # transmissions on their way to us
        self._fifo: list = []
        self._listen_since: float | None = None
        self._history: list = []  # closed listening intervals (start, end)
        self.sent: list = []
        air.attach(self)

    # -- air side ---------------------------------------------------------------------
    def deliver(self, tx) -> None:
        with self._lock:
            self._pending.append(tx)

    def _listening_during(self, start: float, end: float) -> bool:
        if self._listen_since is not None and self._listen_since <= start:
            return True
        return any(a <= start and b >= end for a, b in self._history)

    def _settle(self) -> None:
        now = self.air.clock.now()
        with self._lock:
            keep = []
            for tx in self._pending:
                if tx.end > now:
                    keep.append(tx)
                    continue
                if not self._listening_during(tx.start, tx.end):
                    continue
                if not tx.crc_ok:
                    self.crc_error_count += 1
                    continue
                self._fifo.append(tx)
            self._pending = keep
            self._history = [(a, b) for a, b in self._history if b > now - 30]

    def _stop_listening(self) -> None:
        self._settle()
        if self._listen_since is not None:
            self._history.append((self._listen_since, self.air.clock.now()))
            self._listen_since = None

    # -- RFM9x API ----------------------------------------------------------------------
    def listen(self) -> None:
        if self._listen_since is None:
            self._listen_since = self.air.clock.now()

    def idle(self) -> None:
        self._stop_listening()

    def sleep(self) -> None:
        self._stop_listening()

    @property
    def rssi(self) -> float:
        return self.air.noise_dbm + self.air.rng.uniform(-2, 2)

    @property
    def snr(self) -> float:
        return self.last_snr

    def send(self, data, *, keep_listening: bool = False, destination=None, node=None,
             identifier=None, flags=None) -> bool:
        assert 0 < len(data) <= 252
        self.board.check_alive()
        self._stop_listening()
        frame = RH_HEADER + bytes(data)
        self.sent.append((self.air.clock.now(), self.spreading_factor, bytes(data)))
        dur = self.air.transmit(self, frame, self.frequency_mhz, self.spreading_factor,
                                self.signal_bandwidth)
        self.board.clock.sleep(dur, self.board.halt)
        if keep_listening:
            self.listen()
        return True

    def rx_done(self) -> bool:
        self._settle()
        return bool(self._fifo)

    def receive(self, *, keep_listening: bool = True, with_header: bool = False,
                with_ack: bool = False, timeout: float | None = None):
        if timeout is None:
            timeout = self.receive_timeout
        self.listen()
        clock = self.board.clock
        end = clock.now() + timeout
        while True:
            self.board.check_alive()
            self._settle()
            if self._fifo:
                break
            left = end - clock.now()
            if left <= 0:
                if not keep_listening:
                    self.idle()
                return None
            clock.sleep(min(left, 0.005 * clock.speed), self.board.halt)
        tx = self._fifo.pop(0)
        self.last_rssi = self.air.rssi
        self.last_snr = self.air.snr
        self._stop_listening()
        if keep_listening:
            self.listen()
        packet = tx.data
        if len(packet) < 5:
            return None
        return bytearray(packet if with_header else packet[4:])
