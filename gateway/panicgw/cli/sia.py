"""`panicgw sia test`: one exchange with a configured DC-09 receiver, printed byte for byte.

For the installer and the centre's integrator setting up a `[[sia]]` receiver together: it
sends a link test (NULL message) or a TEST event with the same transmitter the daemon uses
(same framing, key, retries, NAK clock correction and ACK checks) and shows every frame
sent and every reply, so a refusal or silence can be read on both sides. The sequence
number is taken from the route's counter in the gateway DB when there is one, so a running
daemon never reuses it (receivers deduplicate on it).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import typer

from panicgw import access
from panicgw.cli import db as cli_db
from panicgw.forward.payload import EVENTS
from panicgw.forward.sia.client import DELIVERED, REFUSED, Result, Transmitter
from panicgw.forward.sia.message import from_payload
from panicgw.forward.sia.route import route_name
from panicgw.forward.sia.settings import ReceiverSettings

EXIT_ACK = 0
EXIT_REFUSED = 1  # DUH
EXIT_USAGE = 2
EXIT_NO_ANSWER = 4

app = typer.Typer(help="SIA DC-09 receivers (\\[\\[sia]], docs/sia.md): test the link.",
                  no_args_is_help=True)


def spell(raw: bytes) -> str:
    """A frame as docs/sia.md writes it: <LF>/<CR> spelled out, other control bytes \\xNN."""
    out = []
    for b in raw:
        if b == 0x0A:
            out.append("<LF>")
        elif b == 0x0D:
            out.append("<CR>")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02X}")
    return "".join(out)


def _pick(receivers: list[ReceiverSettings], name: str | None) -> ReceiverSettings:
    if not receivers:
        typer.echo("error: no [[sia]] receiver in the config: add one (docs/sia.md section 4)",
                   err=True)
        raise typer.Exit(EXIT_USAGE)
    if name is None:
        if len(receivers) > 1:
            names = ", ".join(r.name for r in receivers)
            typer.echo(f"error: {len(receivers)} receivers configured ({names}): pick one "
                       "with --name", err=True)
            raise typer.Exit(EXIT_USAGE)
        return receivers[0]
    for r in receivers:
        if r.name == name:
            return r
    typer.echo(f"error: no [[sia]] receiver named {name!r}; configured: "
               f"{', '.join(r.name for r in receivers)}", err=True)
    raise typer.Exit(EXIT_USAGE)


async def _exchange(settings: ReceiverSettings, event: str, gateway_id: str,
                    db: Path) -> Result:
    store = None
    try:
        store = access.open_db(db, readonly=False)
    except access.AccessError:
        store = None  # no DB yet (gateway never run): the transmitter's own counter
    route = route_name(settings)

    async def take() -> int:
        assert store is not None
        return store.take_route_seq(route, None)

    tx = Transmitter(settings, take_sequence=take if store is not None else None)
    try:
        if event == "link":
            return await tx.link_test()
        # The gateway's own TEST (zone 000, `I` names the gateway): no button is involved.
        spec = EVENTS["test"]
        payload = {"event": "test", "gateway_id": gateway_id,
                   "contact_id": {"code": spec.code, "qualifier": spec.qualifier}}
        message = from_payload(payload, account=settings.account, zone=0,
                               fmt=settings.format, xdata=settings.xdata)
        seq = await take() if store is not None else tx.next_sequence()
        return await tx.deliver(message, seq)
    finally:
        tx.close()
        if store is not None:
            store.close()


def _advice(settings: ReceiverSettings, result: Result) -> str:
    if result.outcome == DELIVERED:
        return f"ACK from {result.endpoint}: the receiver takes our messages"
    if result.outcome == REFUSED:
        return (f"DUH from {result.endpoint}: the receiver does not understand the message. "
                f"Check with the centre that account {settings.account} is set up there, the "
                f"format ({settings.format}) and, if encrypted, the key and key_format; "
                "docs/sia.md sections 3-4")
    where = ", ".join(str(e) for e in settings.endpoints)
    return (f"no valid answer from {where} ({result.reason}: {result.detail}). Check that the "
            f"receiver runs and listens there over {settings.primary.protocol.upper()} "
            "(host, port, protocol, firewall), and that the centre has the same key and "
            "account; replies it sent that did not count are shown above")


def _doc(settings: ReceiverSettings, event: str, result: Result) -> dict[str, Any]:
    return {
        "receiver": settings.name, "event": event, "outcome": result.outcome,
        "reason": result.reason, "detail": result.detail, "seq": result.seq,
        "endpoint": result.endpoint, "advice": _advice(settings, result),
        "exchanges": [{"endpoint": x.endpoint, "outcome": x.outcome, "sent": spell(x.sent),
                       "replies": [spell(r) for r in x.replies]} for x in result.exchanges],
    }


@app.command("test")
def test_cmd(
    name: str = typer.Option(None, "--name", "-n", help="The \\[\\[sia]] receiver's name "
                             "(needed when more than one is configured)."),
    event: str = typer.Option("link", "--event", "-e", help="link: a NULL message (link "
                              "test); test: a TEST event (RX / 1601 at zone 000)."),
    config: Path = typer.Option(None, "--config", "-c", envvar="PANICGW_CONFIG",
                                help=cli_db.CONFIG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Send a link test or a TEST event to a configured receiver and print the exchange
    byte for byte (<LF>/<CR> spelled out, as docs/sia.md writes frames).

    Examples: `panicgw sia test`, `panicgw sia test --name centre --event test --json`.

    Exit codes: 0 ACK, 1 refused (DUH), 2 bad arguments or config, 4 no valid answer.
    """
    if event not in ("link", "test"):
        typer.echo(f"error: --event {event!r}: give link or test", err=True)
        raise typer.Exit(EXIT_USAGE)
    cfg = cli_db.load_config(config, EXIT_USAGE)
    settings = _pick(cfg.sia, name)
    # The transmitter's log lines speak for the daemon ("retried later"); here the advice
    # below says what happened.
    logging.getLogger("panicgw.sia").disabled = True
    result = asyncio.run(_exchange(settings, event, str(cfg.gateway["id"]), cfg.db_path))
    code = {DELIVERED: EXIT_ACK, REFUSED: EXIT_REFUSED}.get(result.outcome, EXIT_NO_ANSWER)
    doc = _doc(settings, event, result)
    if as_json:
        typer.echo(json.dumps(doc))
        raise typer.Exit(code)
    typer.echo(f"{settings.name}: {'link test' if event == 'link' else 'TEST event'}, "
               f"seq {result.seq:04d}, {'encrypted' if settings.encrypted else 'plain'}")
    for x in doc["exchanges"]:
        typer.echo(f"-> {x['endpoint']}  {x['sent']}")
        for r in x["replies"]:
            typer.echo(f"<- {x['endpoint']}  {r}")
        if not x["replies"]:
            typer.echo(f"<- {x['endpoint']}  ({x['outcome']}: nothing)")
    if not doc["exchanges"]:
        typer.echo(f"-> {', '.join(str(e) for e in settings.endpoints)}  (nothing sent: "
                   f"{result.reason})")
    typer.echo(doc["advice"], err=code != EXIT_ACK)
    raise typer.Exit(code)
