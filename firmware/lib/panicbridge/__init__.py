"""LoRa bridge device logic: radio <-> USB serial link (no hardware imports)."""

FIRMWARE_VERSION = "0.2.0"  # 0.2.0: adafruit_rfm, no RadioHead header on air
