"""LoRa bridge device logic: radio <-> USB serial link (no hardware imports)."""

FIRMWARE_VERSION = "0.1.0"
