"""`panicgw`: the gateway's command line (technicians run it on the Pi)."""

import typer

from panicgw import __version__
from panicgw.cli.decode import decode
from panicgw.cli.devices import app as devices_app
from panicgw.cli.diag import diag_cmd
from panicgw.cli.events import events
from panicgw.cli.monitor import monitor
from panicgw.cli.outbox import app as outbox_app
from panicgw.cli.run import run
from panicgw.cli.setup import setup
from panicgw.cli.sia import app as sia_app
from panicgw.dispatch_server.cli import dispatch_server

app = typer.Typer(
    help="Panic-button gateway: receive, verify, store and forward alarms; diagnose the Pi.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"panicgw {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Panic-button gateway tools."""


app.command("decode")(decode)
app.command("run")(run)
app.command("diag")(diag_cmd)
app.command("events")(events)
app.command("monitor")(monitor)
app.command("dispatch-server")(dispatch_server)
app.add_typer(devices_app, name="devices")
app.add_typer(outbox_app, name="outbox")
app.command("setup")(setup)
app.add_typer(sia_app, name="sia")
