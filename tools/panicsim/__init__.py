"""Simulated board: runs the real firmware on a PC (virtual pins, clock, NVM, LoRa air, Wi-Fi)."""
