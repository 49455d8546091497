# The connection of a board in a host harness (gate_config.LINK = (host, port)): one TCP
# connection carrying JSON lines both ways.
#   board -> host  {"t": "hello"}                        once, on connect
#                  {"t": "modem", "m": {...}}            the RFM95's modulation changed
#                  {"t": "tx", "p": hex, "m": {...}, "at": wall}   a packet went on air;
#                                                        the host answers {"t": "txdone",
#                                                        "dur": seconds on air}
#   host -> board  {"t": "hello", "pins": {name: level}, "noise": dBm}
#                  {"t": "rx", "p": hex, "s": wall, "e": wall, "rssi": .., "snr": .., "ok": ..}
#                  {"t": "pin", "n": name, "v": level, "at": wall}
# Times are wall-clock seconds (time.time() on the host, time_ns() here): both sides read
# the same clock, so a packet's start and end mean the same instant to the radio model.
import binascii
import json
import select
import socket

import gate_config

_buf = bytearray()
_handlers = {}
_replies = []
_sock = socket.socket()
_sock.connect(socket.getaddrinfo(gate_config.LINK[0], gate_config.LINK[1])[0][-1])
_sock.setblocking(False)
_poll = select.poll()
_poll.register(_sock, select.POLLIN)


def on(kind, fn):
    """Call ``fn(msg)`` for every host message of type ``kind``."""
    _handlers[kind] = fn


def send(msg):
    data = (json.dumps(msg) + "\n").encode()
    while data:
        try:
            n = _sock.write(data)
        except OSError:
            n = 0
        data = data[n or 0:]
        if data:
            _poll.poll(10)


def read(timeout_ms):
    """Wait up to ``timeout_ms`` for host data; handle every complete message. Small
    reads into one buffer: the harness must not need big blocks of the firmware's heap."""
    if not _poll.poll(timeout_ms):
        return
    while True:
        try:
            chunk = _sock.read(256)
        except OSError:
            chunk = None
        if chunk == b"":
            raise OSError("the host harness closed the board's link")
        if not chunk:
            break
        _buf.extend(chunk)
        while True:
            i = _buf.find(b"\n")
            if i < 0:
                break
            msg = json.loads(_buf[:i])
            _buf[:i + 1] = b""  # (MicroPython: no del on a bytearray slice)
            fn = _handlers.get(msg["t"])
            if fn is not None:
                fn(msg)
            else:
                _replies.append(msg)
        if not _poll.poll(0):
            break


def _take(kind):
    for m in _replies:
        if m["t"] == kind:
            _replies.remove(m)
            return m
    return None


def request(msg, reply):
    """Send ``msg`` and wait for the host's message of type ``reply``."""
    send(msg)
    while True:
        m = _take(reply)
        if m is not None:
            return m
        read(1000)


def hexlify(data):
    return binascii.hexlify(bytes(data)).decode()


def unhexlify(text):
    return binascii.unhexlify(text)


send({"t": "hello"})
hello = None  # the host's hello: pin levels and the noise floor
while hello is None:
    read(1000)
    hello = _take("hello")
