"""Button device logic: press classifier, counter, retry policy, transports (no hardware imports).

Every module here takes plain values or a small HAL object, so the same code runs on
CircuitPython, under the MicroPython VM in tests, and on CPython with the simulated board.
"""

FIRMWARE_VERSION = "0.3.0"  # 0.3.0: adafruit_rfm (19 bytes on air), DELIVERED, ack line
# 0.2.0: TEST request in NVM (panictool verify)
