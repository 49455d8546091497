"""Button device logic: press classifier, counter, retry policy, transports (no hardware imports).

Every module here takes plain values or a small HAL object, so the same code runs on
CircuitPython, under the MicroPython VM in tests, and on CPython with the simulated board.
"""

FIRMWARE_VERSION = "0.2.0"  # 0.2.0: TEST request in NVM (panictool verify)
