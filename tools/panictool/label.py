"""The printable label: a QR code with the device id and site name (never the key).

The SVG is the whole label (QR plus readable text, for a sticker printer); the PNG is the
QR code alone for documents; the terminal copy lets the installer scan it on the spot.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import segno

from panicgw.access import DeviceRecord

QR_FORMAT = "pb1"


def qr_payload(rec: DeviceRecord) -> str:
    """Non-secret facts a phone app or the police can read from the sticker."""
    return json.dumps({"fmt": QR_FORMAT, "id": f"{rec.device_id:08X}", "site": rec.site.name,
                       "label": rec.label}, ensure_ascii=False, separators=(",", ":"))


def make_qr(rec: DeviceRecord) -> segno.QRCode:
    return segno.make(qr_payload(rec), error="m", micro=False)


def label_svg(rec: DeviceRecord) -> str:
    """A 60 x 30 mm label: QR on the left, id, site, label and phone on the right."""
    qr = make_qr(rec)
    n = qr.symbol_size(scale=1, border=2)[0]
    cells = []
    for y, row in enumerate(qr.matrix_iter(scale=1, border=2)):
        for x, dark in enumerate(row):
            if dark:
                cells.append(f"M{x} {y}h1v1h-1z")
    texts = [(f"Panic button {rec.device_id:08X}", 3.4, "bold"), (rec.site.name, 3.0, "normal"),
             (rec.label, 2.6, "normal"), (rec.site.address[:40], 2.2, "normal"),
             (rec.site.phone, 2.2, "normal")]
    lines = []
    y = 6.0
    for text, size, weight in texts:
        if text:
            lines.append(f'<text x="31" y="{y:.1f}" font-size="{size}" font-weight="{weight}" '
                         f'font-family="sans-serif">{escape(text)}</text>')
            y += size + 1.6
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="60mm" height="30mm" '
        'viewBox="0 0 60 30">\n'
        f"<desc>{escape(qr_payload(rec))}</desc>\n"
        '<rect width="60" height="30" fill="#fff"/>\n'
        f'<g transform="translate(1 1) scale({28 / n:.5f})">'
        f'<path fill="#000" d="{"".join(cells)}"/></g>\n'
        + "\n".join(lines) + "\n</svg>\n"
    )


def write_label(folder: Path, rec: DeviceRecord) -> tuple[Path, Path]:
    base = folder / f"panic-button-{rec.device_id:08X}"
    svg = base.with_suffix(".svg")
    png = base.with_suffix(".png")
    svg.write_text(label_svg(rec), encoding="utf-8")
    make_qr(rec).save(str(png), kind="png", scale=8, border=4)
    return svg, png


def print_qr(rec: DeviceRecord) -> None:
    make_qr(rec).terminal(compact=True)
