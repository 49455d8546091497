"""The bridge's board: pins and limits of the Feather RP2040 RFM95 on the gateway's USB.

Kept in panicbridge so a bridge's CIRCUITPY holds everything the bridge imports (the
button's board table, ``panicbutton.boards``, is not flashed onto a bridge). Pins are
strings (attributes of CircuitPython's ``board``), turned into pins only by the glue.
"""

PROFILE = {
    "led": "LED",
    "rfm": ("RFM_CS", "RFM_RST"),  # RFM95 on the board's default SPI (board.SPI())
    "watchdog_s": 8,  # RP2040 hardware maximum is about 8.3 s
}
# CircuitPython board_id values the bridge firmware runs on (panictool flash checks them).
IDS = ("adafruit_feather_rp2040_rfm",)
