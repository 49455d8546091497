"""The one table of board differences: pins and capabilities per supported board profile.

Pins are named as strings (attributes of CircuitPython's ``board`` module) so this table
stays importable without hardware; only the glue turns them into pin objects. Add a board
by adding a row here, never an ``if`` elsewhere.
"""

# Keys of each profile:
#   button      pin of the panic button (switch to GND, internal pull-up)
#   tamper      pin of an optional tamper switch (closed = enclosure shut) or None
#   led         status LED pin
#   rfm         None, or (cs pin, reset pin): RFM95 on the board's default SPI
#   battery     ("adc", pin, divider) | ("max17048",) | None
#   wifi        True when the chip has native Wi-Fi
#   deep_sleep  True when alarm deep sleep with PinAlarm + TimeAlarm works
#   watchdog_s  watchdog timeout to use (RP2040 hardware maximum is about 8.3 s)
#   ids         CircuitPython board_id values that select this profile automatically
PROFILES = {
    "feather_rp2040_rfm95": {
        "button": "D5", "tamper": "D6", "led": "LED",
        "rfm": ("RFM_CS", "RFM_RST"),
        "battery": ("adc", "A3", 2.0),
        "wifi": False, "deep_sleep": True, "watchdog_s": 8,
        "ids": ("adafruit_feather_rp2040_rfm",),
    },
    "feather_esp32s3": {
        "button": "D5", "tamper": "D6", "led": "LED",
        "rfm": None,
        "battery": ("max17048",),
        "wifi": True, "deep_sleep": True, "watchdog_s": 20,
        "ids": ("adafruit_feather_esp32s3_nopsram", "adafruit_feather_esp32s3_4mbflash_2mbpsram"),
    },
    "feather_esp32s3_rfm95_wing": {
        "button": "D5", "tamper": "D6", "led": "LED",
        "rfm": ("D10", "D11"),
        "battery": ("max17048",),
        "wifi": True, "deep_sleep": True, "watchdog_s": 20,
        "ids": (),  # same board_id as feather_esp32s3: select with PB_BOARD in settings.toml
    },
}
# The LoRa bridge's board is in panicbridge/boards.py (a bridge is flashed without this
# package).


def profile_for(board_id, override=None):
    """(name, profile) for an explicit ``override`` name or the running board's id.

    Raises ValueError naming the known profiles when nothing matches.
    """
    if override:
        if override in PROFILES:
            return override, PROFILES[override]
        raise ValueError("unknown board profile %r; known: %s"
                         % (override, ", ".join(sorted(PROFILES))))
    for name in sorted(PROFILES):
        if board_id in PROFILES[name]["ids"]:
            return name, PROFILES[name]
    raise ValueError("board %r has no profile; set PB_BOARD to one of: %s"
                     % (board_id, ", ".join(sorted(PROFILES))))
