"""A simulated panic button running the real firmware/button/code.py."""

import json

from panicbutton.nvmstore import identity_record
from panicsim.board import SimBoard

# sim board -> CircuitPython board_id, PB_BOARD override, NVM size, RFM95 (CS, RESET) pins
# or None, native Wi-Fi
PROFILES = {
    "feather_rp2040_rfm95": ("adafruit_feather_rp2040_rfm", None, 4096, ("RFM_CS", "RFM_RST"),
                             False),
    "feather_esp32s3": ("adafruit_feather_esp32s3_nopsram", None, 8192, None, True),
    "feather_esp32s3_rfm95_wing": ("adafruit_feather_esp32s3_nopsram",
                                   "feather_esp32s3_rfm95_wing", 8192, ("D10", "D11"), True),
}


class SimButton(SimBoard):
    kind = "button"

    def __init__(self, device_id: int, key: bytes, air=None, board: str = "feather_rp2040_rfm95",
                 settings: dict | None = None, wifi_networks: dict | None = None,
                 name: str | None = None, provisioned: bool = True, **kw) -> None:
        if board not in PROFILES:
            raise ValueError(f"unknown sim board {board!r}; known: {', '.join(PROFILES)}")
        self.board_id, override, nvm, self.radio_pins, self.wifi_capable = PROFILES[board]
        s = {"PB_REGION": "AS923-2", "PB_SF": 9}
        if override:
            s["PB_BOARD"] = override
        s.update(settings or {})
        kw.setdefault("nvm_size", nvm)
        super().__init__(air=air, settings=s, name=name or f"button-{device_id:08x}", **kw)
        self.device_id = device_id
        self.key = bytes(key)
        self.wifi_networks = dict(wifi_networks or {})
        if provisioned:
            self.nvm[0:26] = identity_record(device_id, key)
        self.nvm.writes = 0  # count the firmware's writes only
        self.pin("D6").level = False  # tamper switch closed (enclosure shut)

    # -- the person at the button -------------------------------------------------------
    @property
    def button(self):
        return self.pin("D5")

    def press(self, seconds: float = 2.0) -> None:
        """Hold the button for ``seconds`` of simulated time (blocks the caller)."""
        self.button.drive(False)
        try:
            self.clock.sleep(seconds)
        finally:
            self.button.drive(True)

    def click(self, times: int, hold: float = 0.15, gap: float = 0.3) -> None:
        """Quick presses, e.g. ``click(5)`` for the TEST pattern."""
        for i in range(times):
            self.press(hold)
            if i + 1 < times:
                self.clock.sleep(gap)

    def alarm(self) -> None:
        self.press(2.0)

    def test(self) -> None:
        self.click(5)

    def set_tamper(self, open_: bool) -> None:
        self.pin("D6").drive(bool(open_))

    # -- what the installer would see -----------------------------------------------------
    def boot_reports(self) -> list[dict]:
        out = []
        for ln in list(self.console):
            if ln.startswith("PANIC-BUTTON {"):
                out.append(json.loads(ln[len("PANIC-BUTTON "):]))
        return out

    def lines(self, word: str) -> list[str]:
        return [ln for ln in list(self.console) if word in ln]

    @property
    def nvm_writes(self) -> int:
        return self.nvm.writes
