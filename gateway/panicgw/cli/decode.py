"""`panicgw decode`: explain a captured radio frame, and verify it when given the key."""

import json

import typer

from panicproto import frames
from panicproto.errors import ProtocolError

EXIT_REJECTED = 1
EXIT_USAGE = 2


def _hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value.replace(":", "").replace(" ", ""))
    except ValueError:
        typer.echo(f"error: {what} is not hexadecimal: {value!r}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def decode(
    frame: str = typer.Argument(..., help="Frame bytes in hex, as logged by the gateway."),
    key: str = typer.Option(
        None, "--key", help="Device key in hex (32 digits) to verify the tag. Never logged."
    ),
    downlink: bool = typer.Option(False, "--downlink", help="Decode a gateway-to-button frame."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for scripts."),
) -> None:
    """Decode an uplink (or, with --downlink, a downlink) frame.

    Exit codes: 0 decoded (and verified if --key was given), 1 rejected, 2 bad arguments.

    Example: panicgw decode 1100000001000000010000f0a1b2c3d4e5f60718 --key 00112233...
    """
    data = _hex(frame, "frame")
    k = _hex(key, "--key") if key else None
    if downlink and k is None:
        typer.echo("error: --downlink needs --key (downlinks are only parsed verified)", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        if downlink:
            fields = frames.decode_downlink(data, k).fields()
        else:
            fields = frames.decode_uplink(data, k).fields()
    except ProtocolError as e:
        if as_json:
            typer.echo(json.dumps({"ok": False, "reason": e.reason, "detail": e.detail}))
        else:
            typer.echo(f"REJECTED {e.reason}" + (f": {e.detail}" if e.detail else ""))
        raise typer.Exit(EXIT_REJECTED) from None
    fields["verified"] = k is not None
    if as_json:
        typer.echo(json.dumps({"ok": True, **fields}))
        return
    for name, value in fields.items():
        shown = f"0x{value:08X}" if name in ("device_id", "counter") else value
        typer.echo(f"{name:12} {shown}")
    if k is None:
        typer.echo("(tag not checked: pass --key to verify)")
