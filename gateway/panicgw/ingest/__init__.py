"""How frames come in: Wi-Fi buttons over HTTP, LoRa buttons through the serial bridge."""
