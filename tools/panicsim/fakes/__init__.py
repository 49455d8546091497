"""CircuitPython's built-in modules for a simulated board: one small module per fake.

Each ``panicsim.fakes.<name>`` fakes the built-in module ``<name>`` and has
``module(board) -> object``, which returns a fresh instance for one run of code.py,
boot.py or a REPL session on ``board`` (a panicsim.board.SimBoard). Hardware fakes act
on the board's state (its pins, NVM, sleep memory, SPI bus with the SX127x model, clock);
core modules have CircuitPython's shape where the firmware or its libraries could tell the
difference (``sys.implementation.name``, ``hashlib.new`` only, ``select.poll().ipoll``,
``binascii`` without ``crc_hqx``). panicsim.board assembles them per board
(``BUILTINS``, plus ``WIFI`` on Wi-Fi boards).
"""

import array
import collections
import errno
import io
import json
import math
import random
import re
import ssl
import struct
import traceback

from panicsim.fakes import (
    alarm,
    analogio,
    binascii,
    board,
    busio,
    digitalio,
    gc,
    hashlib,
    keypad,
    microcontroller,
    micropython,
    os,
    select,
    socketpool,
    supervisor,
    sys,
    time,
    usb_cdc,
    watchdog,
    wifi,
)

# Host modules a CircuitPython board has as built-ins with the same API (for what the
# firmware and its libraries use).
HOST = {"json": json, "struct": struct, "math": math, "random": random, "errno": errno,
        "collections": collections, "re": re, "io": io, "array": array,
        "traceback": traceback}
BUILTINS = {"time": time, "board": board, "digitalio": digitalio, "keypad": keypad,
            "microcontroller": microcontroller, "watchdog": watchdog, "alarm": alarm,
            "analogio": analogio, "os": os, "usb_cdc": usb_cdc, "busio": busio, "sys": sys,
            "gc": gc, "micropython": micropython, "supervisor": supervisor,
            "select": select, "hashlib": hashlib, "binascii": binascii}
WIFI = {"wifi": wifi, "socketpool": socketpool}  # and the host's ssl


def modules(b) -> dict:
    """Fresh built-in modules for one run on board ``b``."""
    mods = dict(HOST)
    for name, fake in BUILTINS.items():
        mods[name] = fake.module(b)
    if b.wifi_capable:
        for name, fake in WIFI.items():
            mods[name] = fake.module(b)
        mods["ssl"] = ssl
    return mods
