"""The QR code `panictool provision` prints in the terminal is the label's QR, module for
module (an installer may scan the screen instead of the printed sticker)."""

from __future__ import annotations

import segno

from panicgw.registry import DeviceRecord, SiteRecord
from panictool import label

# segno's compact terminal output draws two module rows per text row, light modules as ink
# on a dark terminal: each character is (top light?, bottom light?).
HALVES = {"█": (True, True), " ": (False, False), "▀": (True, False), "▄": (False, True)}


def _decode(text: str) -> list[list[bool]]:
    """Dark-module matrix (True = dark) from the terminal drawing, border included."""
    rows: list[list[bool]] = []
    for line in text.splitlines():
        if not line:
            continue
        cells = [HALVES[c] for c in line]
        rows.append([not top for top, _ in cells])
        rows.append([not bottom for _, bottom in cells])
    return rows


def test_terminal_qr_is_the_label_qr(capsys) -> None:
    site = SiteRecord("Toko Maju", "shop", "Jl. Merdeka 12, Bandung", -6.9147, 107.6098,
                      "Ibu Sari", "+62 812 5555 0101")
    rec = DeviceRecord(0x5E21A9C4, bytes(range(16)), site, "kasir", ["lora"], 3600, "0.2.0")
    label.print_qr(rec)
    drawn = _decode(capsys.readouterr().out)
    want = [[bool(v) for v in row] for row in
            segno.make(label.qr_payload(rec), error="m", micro=False).matrix_iter(border=4)]
    assert drawn[:len(want)] == want
    assert len(drawn) - len(want) == len(want) % 2  # an odd count leaves one blank half row
    assert rec.key.hex() not in capsys.readouterr().out
