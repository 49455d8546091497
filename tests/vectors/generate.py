"""Regenerate the protocol test vectors (tests/vectors/*.json) from the protocol module.

Run `make vectors` after a deliberate protocol change, review the diff, and commit it:
the vectors pin the bytes, so an accidental change to the encoder fails the tests.
"""

import hashlib
import hmac
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "firmware" / "lib"))

from panicproto import airtime, frames, link  # noqa: E402
from panicproto.errors import ProtocolError  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent
KEY_A = bytes(range(16))
KEY_B = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")

UPLINKS = [
    ("alarm basic", KEY_A, dict(kind=frames.ALARM, device_id=0x12345678, counter=0x00010001,
                                battery_mv=3300)),
    ("cancel", KEY_A, dict(kind=frames.CANCEL, device_id=0x12345678, counter=0x00010002,
                           battery_mv=3300)),
    ("heartbeat low battery", KEY_A, dict(kind=frames.HEARTBEAT, device_id=0x12345678,
                                          counter=0x00010003, low_battery=True, battery_mv=2960)),
    ("test press", KEY_B, dict(kind=frames.TEST, device_id=0xCAFE0001, counter=7,
                               battery_mv=4100)),
    ("tamper with tamper flag", KEY_B, dict(kind=frames.TAMPER, device_id=0xCAFE0001,
                                            counter=8, tamper=True, battery_mv=4100)),
    ("alarm retry 3 over wifi", KEY_A, dict(kind=frames.ALARM, device_id=0x12345678,
                                            counter=0x00010001, attempt=3, wifi=True,
                                            battery_mv=3300)),
    ("alarm attempt 15 all flags", KEY_A, dict(kind=frames.ALARM, device_id=1, counter=2,
                                               attempt=15, low_battery=True, tamper=True,
                                               wifi=True, battery_mv=5100)),
    ("counter zero", KEY_A, dict(kind=frames.ALARM, device_id=1, counter=0, battery_mv=0)),
    ("counter 0xFFFF (last sequence of epoch 0)", KEY_A,
     dict(kind=frames.ALARM, device_id=1, counter=0xFFFF, battery_mv=3000)),
    ("counter 0x10000 (epoch 1 sequence 0)", KEY_A,
     dict(kind=frames.ALARM, device_id=1, counter=0x10000, battery_mv=3000)),
    ("counter 0xFFFFFFFF", KEY_A, dict(kind=frames.HEARTBEAT, device_id=1, counter=0xFFFFFFFF,
                                        battery_mv=3000)),
    ("device id zero", KEY_B, dict(kind=frames.HEARTBEAT, device_id=0, counter=5,
                                   battery_mv=3700)),
    ("device id 0xFFFFFFFF", KEY_B, dict(kind=frames.ALARM, device_id=0xFFFFFFFF, counter=5,
                                         battery_mv=3700)),
    ("battery 20 mV step", KEY_B, dict(kind=frames.HEARTBEAT, device_id=9, counter=9,
                                       battery_mv=20)),
]

DOWNLINKS = [
    ("ack stored", KEY_A, dict(kind=frames.ACK, device_id=0x12345678, counter=0x00010001,
                               status=frames.STORED)),
    ("ack delivered", KEY_A, dict(kind=frames.ACK, device_id=0x12345678, counter=0x00010001,
                                  status=frames.DELIVERED)),
    ("resync to epoch 3", KEY_A, dict(kind=frames.RESYNC, device_id=0x12345678,
                                      counter=0x00030000, status=0)),
    ("ack counter zero", KEY_B, dict(kind=frames.ACK, device_id=0xCAFE0001, counter=0,
                                     status=frames.STORED)),
    ("ack counter 0xFFFFFFFF", KEY_B, dict(kind=frames.ACK, device_id=0xCAFE0001,
                                           counter=0xFFFFFFFF, status=frames.STORED)),
]

LINKS = [
    ("ping empty", link.PING, 0, b""),
    ("pong echo", link.PONG, 1, b"\x01\x02\x03"),
    ("rx with rssi/snr", link.RX, 2, None),  # payload filled below
    ("tx downlink", link.TX, 3, None),
    ("status json", link.STATUS, 4, b'{"fw":"0.1.0","sf":9}'),
    ("config json", link.CONFIG, 255, b'{"sf":10}'),
    ("log text", link.LOG, 6, b"radio ok"),
    ("payload of zeros (escaping)", link.LOG, 7, b"\x00\x00\x00"),
    ("254 nonzero bytes (full COBS block)", link.LOG, 8, bytes(range(1, 255))),
    ("300-byte payload with zeros", link.LOG, 9, bytes(i % 256 for i in range(300))),
]


def _up(key: bytes, f: dict) -> bytes:
    return frames.encode_uplink(key, frames.Uplink(**f))


def build() -> dict:
    uplinks = []
    for name, key, f in UPLINKS:
        raw = _up(key, f)
        uplinks.append({"name": name, "key": key.hex(), "hex": raw.hex(),
                        "fields": frames.decode_uplink(raw, key).fields()})
    downlinks = []
    for name, key, f in DOWNLINKS:
        raw = frames.encode_downlink(key, frames.Downlink(**f))
        downlinks.append({"name": name, "key": key.hex(), "hex": raw.hex(),
                          "fields": frames.decode_downlink(raw, key).fields()})
    good_up = bytes.fromhex(uplinks[0]["hex"])
    good_down = bytes.fromhex(downlinks[0]["hex"])
    links = []
    for name, kind, seq, payload in LINKS:
        if kind == link.RX:
            payload = link.rx_payload(good_up, -117, -7.25)
        elif kind == link.TX:
            payload = good_down
        links.append({"name": name, "kind": link.TYPE_NAMES[kind], "seq": seq,
                      "payload": payload.hex(), "hex": link.encode(kind, seq, payload).hex()})

    def flip(data: bytes, i: int, mask: int = 1) -> bytes:
        return data[:i] + bytes((data[i] ^ mask,)) + data[i + 1:]

    def resign(body: bytes, key: bytes, direction: int) -> bytes:
        return body + frames.compute_tag(key, direction, body)

    ping = link.cobs_decode(link.encode(link.PING, 1, b"hi")[1:-1])
    bad_type_frame = bytes((0x63, 0)) + b"x"
    bad_type_frame += link.crc16(bad_type_frame).to_bytes(2, "big")
    long_ping = bytes((link.PING, 1)) + bytes(link.MAX_PAYLOAD + 1)
    invalid = [
        ("uplink empty", "uplink", KEY_A, b"", "short"),
        ("uplink 18 bytes", "uplink", KEY_A, good_up[:-1], "short"),
        ("uplink 20 bytes", "uplink", KEY_A, good_up + b"\x00", "long"),
        ("uplink version 2", "uplink", KEY_A,
         resign(bytes((0x21,)) + good_up[1:11], KEY_A, 0), "bad_version"),
        ("uplink version 0", "uplink", KEY_A, flip(good_up, 0, 0x10), "bad_version"),
        ("uplink unknown type 7", "uplink", KEY_A,
         resign(bytes((0x17,)) + good_up[1:11], KEY_A, 0), "bad_type"),
        ("uplink carrying a downlink type", "uplink", KEY_A,
         resign(bytes((0x18,)) + good_up[1:11], KEY_A, 0), "bad_type"),
        ("uplink reserved flag bit", "uplink", KEY_A,
         resign(good_up[:9] + bytes((0x80,)) + good_up[10:11], KEY_A, 0), "bad_field"),
        ("uplink tag bit flipped", "uplink", KEY_A, flip(good_up, 18), "bad_tag"),
        ("uplink counter changed", "uplink", KEY_A, flip(good_up, 8), "bad_tag"),
        ("uplink verified with other key", "uplink", KEY_B, good_up, "bad_tag"),
        ("uplink signed as downlink direction", "uplink", KEY_A,
         resign(good_up[:11], KEY_A, 1), "bad_tag"),
        ("downlink 17 bytes", "downlink", KEY_A, good_down[:-1], "short"),
        ("downlink 19 bytes", "downlink", KEY_A, good_down + b"\x00", "long"),
        ("downlink carrying an uplink type", "downlink", KEY_A,
         resign(bytes((0x11,)) + good_down[1:10], KEY_A, 1), "bad_type"),
        ("downlink tag bit flipped", "downlink", KEY_A, flip(good_down, 17), "bad_tag"),
        ("downlink with other key", "downlink", KEY_B, good_down, "bad_tag"),
        ("downlink signed as uplink direction", "downlink", KEY_A,
         resign(good_down[:10], KEY_A, 0), "bad_tag"),
        ("ack with status 0", "downlink", KEY_A,
         resign(good_down[:9] + b"\x00", KEY_A, 1), "bad_field"),
        ("resync with status 1", "downlink", KEY_A,
         resign(bytes((0x19,)) + good_down[1:9] + b"\x01", KEY_A, 1), "bad_field"),
        ("link empty", "link", None, b"", "empty"),
        ("link bad crc", "link", None, link.cobs_encode(flip(ping, 4)), "bad_crc"),
        ("link cobs code past end", "link", None, b"\x05\x01\x02", "bad_cobs"),
        ("link truncated (3 bytes)", "link", None, link.cobs_encode(b"\x04\x01\x02"),
         "truncated"),
        ("link unknown message type", "link", None, link.cobs_encode(bad_type_frame),
         "bad_type"),
        ("link oversize", "link", None, b"\x01" * (link.MAX_ENCODED + 1), "oversize"),
        # 513 zero bytes of payload: COBS stays under MAX_ENCODED, the payload is over
        ("link payload one over MAX_PAYLOAD", "link", None,
         link.cobs_encode(long_ping + link.crc16(long_ping).to_bytes(2, "big")),
         "oversize"),
    ]
    cases = []
    for name, decoder, key, raw, reason in invalid:
        try:
            if decoder == "uplink":
                frames.decode_uplink(raw, key)
            elif decoder == "downlink":
                frames.decode_downlink(raw, key)
            else:
                link.decode(raw)
        except ProtocolError as e:
            if e.reason != reason:
                raise SystemExit(f"vector {name!r}: expected {reason}, got {e.reason}") from None
        else:
            raise SystemExit(f"vector {name!r} was accepted")
        cases.append({"name": name, "decoder": decoder, "key": key.hex() if key else None,
                      "hex": raw.hex(), "reason": reason})

    air = []
    for payload_len in (frames.UPLINK_LEN, frames.DOWNLINK_LEN):
        for sf in range(7, 13):
            air.append({"bytes": payload_len, "sf": sf, "bw_hz": 125000,
                        "ms": round(airtime.time_on_air_ms(payload_len, sf), 3)})

    # RFC 4231 HMAC-SHA256 cases 1-4, 6, 7 (case 5 is a truncation test), checked here
    # against the standard library so the vectors cannot drift.
    rfc = [
        ("0b" * 20, b"Hi There".hex()),
        (b"Jefe".hex(), b"what do ya want for nothing?".hex()),
        ("aa" * 20, "dd" * 50),
        (bytes(range(1, 26)).hex(), "cd" * 50),
        ("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First".hex()),
        ("aa" * 131, (b"This is a test using a larger than block-size key and a larger than "
                      b"block-size data. The key needs to be hashed before being used by the "
                      b"HMAC algorithm.").hex()),
    ]
    hmacs = [{"key": k, "data": d,
              "mac": hmac.new(bytes.fromhex(k), bytes.fromhex(d), hashlib.sha256).hexdigest()}
             for k, d in rfc]
    return {"uplink": uplinks, "downlink": downlinks, "link": links, "invalid": cases,
            "airtime": air, "hmac_rfc4231": hmacs}


def main() -> None:
    data = build()
    # One file per section, one case per line: small enough for a 64 KB MicroPython heap,
    # readable in a diff.
    for old in OUT_DIR.glob("*.json"):
        old.unlink()
    for section, cases in data.items():
        rows = ",\n ".join(json.dumps(c, separators=(",", ":")) for c in cases)
        (OUT_DIR / f"{section}.json").write_text(f"[\n {rows}\n]\n")
    total = sum(len(v) for v in data.values())
    print(f"wrote {len(data)} files in {OUT_DIR.relative_to(ROOT)}: {total} cases")


if __name__ == "__main__":
    main()
