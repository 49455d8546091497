"""Stage 1, verify: decode, device lookup, tag, and where the counter falls in the window.

A frame passes only with a known device and a valid tag under that device's current key;
everything before that is unauthenticated input and is refused with a reason (never an
exception: floods of forgeries are the normal case this stage is built for).

The registry is cached here as the hot path needs it (keys, key generations, replay
windows); site and contact details stay in SQLite and are read only when an incident is
stored (rare), which keeps 10,000 devices within the Pi's memory budget.
"""

from __future__ import annotations

from typing import NamedTuple

from panicgw.pipeline.frame import UNKNOWN_DEVICE
from panicgw.store import Store
from panicproto import frames, replay
from panicproto.errors import ProtocolError


class Device:
    """A registered device as the hot path needs it."""

    __slots__ = ("key", "window", "key_gen")

    def __init__(self, key: bytes, window: replay.ReplayWindow, key_gen: int = 1):
        self.key = key
        self.window = window
        self.key_gen = key_gen


class Refusal(NamedTuple):
    """Why a frame did not verify (``device_id`` when the frame got far enough to name one)."""

    reason: str
    detail: str
    device_id: int | None = None


def load_devices(store: Store, replay_size: int) -> dict[int, Device]:
    """Keys, key generations and replay windows of every registered device, as committed."""
    states = store.device_states()
    devices: dict[int, Device] = {}
    for device_id, key, _supervision_s, key_gen in store.device_keys():
        st = states.get(device_id)
        win = replay.ReplayWindow(replay_size)
        if st is not None and st.replay_highest >= 0:
            win = replay.ReplayWindow(replay_size, st.replay_highest,
                                      st.replay_bitmap & ((1 << replay_size) - 1))
        devices[device_id] = Device(key, win, key_gen)
    return devices


def verify(devices: dict[int, Device], data: bytes
           ) -> tuple[Device, frames.Uplink] | Refusal:
    """The device and the decoded uplink of an authentic frame, or why it is not one."""
    try:
        up = frames.decode_uplink(data)
    except ProtocolError as e:
        return Refusal(e.reason, e.detail)
    dev = devices.get(up.device_id)
    if dev is None:
        return Refusal(UNKNOWN_DEVICE, f"0x{up.device_id:08X}", up.device_id)
    try:
        frames.verify(dev.key, frames.DIR_UP, data)
    except ProtocolError as e:
        return Refusal(e.reason, f"device 0x{up.device_id:08X}", up.device_id)
    return dev, up


def resync_counter(highest: int) -> int | None:
    """First counter of the epoch after the highest one seen; None when the highest epoch
    is the last one (0xFFFF): no counter above it exists, so no RESYNC can help and the
    device must be rekeyed (docs/protocol.md, "The top of the counter space")."""
    epoch, _ = frames.split_counter(max(highest, 0))
    if epoch >= 0xFFFF:
        return None
    return frames.make_counter(epoch + 1, 0)
