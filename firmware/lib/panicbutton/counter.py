"""Frame counter that never repeats: epoch (NVM, bumped per cold boot) << 16 | sequence.

The sequence lives in RAM and ``alarm.sleep_memory`` (survives deep sleep and reloads,
lost on power loss). Every counter is written ahead to sleep memory before it is used,
so a restart that keeps sleep memory continues after the last used value, and a restart
that loses it bumps the epoch in NVM. NVM is written once per cold boot (and when a
sequence space of 65536 runs out or a RESYNC moves the epoch), never per message.

sleep memory layout (offset 0): b"PS" | epoch u16 | next sequence u32 | crc16.
"""

import struct

from panicbutton.nvmstore import EPOCH_MAX
from panicproto import make_counter, split_counter
from panicproto.crc import crc16

SLEEP_LEN = 10
SEQ_LIMIT = 0x10000


class CounterExhausted(Exception):
    """All 2**32 counters are used: the device must be re-provisioned with a new key."""


class Counter:
    def __init__(self, epochs, sleep_memory=None):
        self.epochs = epochs
        self.mem = sleep_memory
        self.epoch = 0
        self.seq = 0
        self.cold = True

    def _load_sleep(self):
        if self.mem is None or len(self.mem) < SLEEP_LEN:
            return None
        raw = bytes(self.mem[0:SLEEP_LEN])
        if raw[0:2] != b"PS" or struct.unpack(">H", raw[8:10])[0] != crc16(raw[0:8]):
            return None
        return struct.unpack(">HI", raw[2:8])

    def _save_sleep(self):
        if self.mem is None or len(self.mem) < SLEEP_LEN:
            return
        body = b"PS" + struct.pack(">HI", self.epoch, self.seq)
        self.mem[0:SLEEP_LEN] = body + struct.pack(">H", crc16(body))

    def _bump_epoch(self, new_epoch):
        if new_epoch > EPOCH_MAX:
            raise CounterExhausted("counter space exhausted: re-provision this device")
        self.epochs.write(new_epoch)
        self.epoch = new_epoch
        self.seq = 0
        self._save_sleep()

    def boot(self):
        """Restore from sleep memory if it matches the NVM epoch, else start a new epoch."""
        nvm_epoch = self.epochs.read()
        saved = self._load_sleep()
        if saved is not None and saved[0] == nvm_epoch and nvm_epoch > 0 \
                and saved[1] <= SEQ_LIMIT:
            self.epoch, self.seq = saved
            self.cold = False
        else:
            self.cold = True
            self._bump_epoch(nvm_epoch + 1)
        return self.epoch

    def next(self):
        """A fresh counter; persisted (write-ahead) before it is returned."""
        if self.seq >= SEQ_LIMIT:
            self._bump_epoch(self.epoch + 1)
        value = make_counter(self.epoch, self.seq)
        self.seq += 1
        self._save_sleep()
        return value

    def peek(self):
        """The counter the next call to ``next`` returns (for reports)."""
        return make_counter(self.epoch, self.seq) if self.seq < SEQ_LIMIT else None

    def resync(self, next_counter):
        """Move forward so the next counter is at least ``next_counter``; never backwards.

        Returns True when the counter moved.
        """
        epoch, seq = split_counter(next_counter)
        if (epoch, seq) <= (self.epoch, self.seq):
            return False
        if epoch > self.epoch:
            self._bump_epoch(epoch)
        self.seq = seq
        self._save_sleep()
        return True
