"""Ask a button for one TEST transmission over USB, so `panictool verify` needs no hands.

The request is a CRC-protected record in NVM bytes 40-45 (``panicbutton.nvmstore``), written
over the raw REPL. At its next boot the firmware (0.2.0 and later) erases it, reports its
nonce in the boot report (``remote_test``) and sends exactly one TEST as if the button had
been clicked 5 times. The tool checks the board can take it *before* writing, so an older
firmware never keeps a stale request that a later upgrade would act on.
"""

from __future__ import annotations

import secrets

from packaging.version import InvalidVersion, Version

from panicbutton import nvmstore
from panictool.transport import Transport

SINCE = Version("0.2.0")
SINCE_TEXT = str(SINCE)


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """(major, minor, patch) of "0.2.0" / "0.2.0-dev"; None when it is not a version with
    all three."""
    try:
        release = Version(text or "").release
    except InvalidVersion:
        return None
    return release[:3] if len(release) >= 3 else None


def supported(version: str | None) -> bool:
    """The firmware can take a TEST request: 0.2.0 or later, any suffix ignored
    ("0.2.0-dev" counts as 0.2.0, which packaging alone would order before it)."""
    v = parse_version(version)
    return v is not None and Version(".".join(map(str, v))) >= SINCE


def installed_firmware(t: Transport) -> str | None:
    """FIRMWARE_VERSION of the button library on the board (None when it has none)."""
    out = t.exec("try:\n import panicbutton\n print(panicbutton.FIRMWARE_VERSION)\n"
                 "except ImportError:\n print('NONE')\n").strip()
    return None if out in ("", "NONE") else out.splitlines()[-1].strip()


def unavailable(t: Transport) -> str | None:
    """Why this board cannot take a TEST request (None when it can)."""
    size = int(t.board_info()["nvm_size"])
    if size < nvmstore.NVM_REMOTE_TEST_MIN:
        return (f"the board has {size} bytes of NVM; a TEST request needs "
                f"{nvmstore.NVM_REMOTE_TEST_MIN}")
    version = installed_firmware(t)
    if version is None:
        return "no button firmware on the board (`panictool flash` installs it)"
    if not supported(version):
        return (f"firmware {version} cannot take a TEST request over USB (needs "
                f"{SINCE_TEXT} or later: `panictool flash` updates it)")
    return None


def request(t: Transport) -> int:
    """Write a TEST request with a fresh nonce (read back to check); returns the nonce."""
    nonce = secrets.randbelow(0xFFFF) + 1
    t.nvm_write(nvmstore.REMOTE_TEST_AT, nvmstore.remote_test_record(nonce))
    return nonce
