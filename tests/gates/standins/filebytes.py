# A bytearray kept in a file (gate_config.NVM_FILE / SLEEP_FILE), so the board's NVM and
# sleep memory outlive the VM process as they outlive a soft reboot on a board. Every
# write goes to the file at once, as a flash write or retained RAM would keep it.
class FileBytes:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self._b = bytearray(f.read())

    def __len__(self):
        return len(self._b)

    def __getitem__(self, i):
        return self._b[i]

    def __setitem__(self, i, v):
        if isinstance(i, slice):
            start, stop, _ = i.indices(len(self._b))
            if len(v) != stop - start:
                raise ValueError("slice assignment must keep the length")
        self._b[i] = v
        with open(self.path, "wb") as f:
            f.write(self._b)

