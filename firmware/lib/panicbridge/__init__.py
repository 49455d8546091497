"""LoRa bridge device logic: radio <-> USB serial link (no hardware imports)."""
