"""`panictool`: the installer's command line (flash, provision, verify, simulate)."""

import typer

from panictool import __version__
from panictool.cmd_airtime import airtime
from panictool.cmd_console import EPILOG as CONSOLE_EPILOG
from panictool.cmd_console import console
from panictool.cmd_flash import FLASH, flash
from panictool.cmd_provision import PROVISION, provision
from panictool.cmd_rekey import REKEY, rekey
from panictool.cmd_sim import SIM, sim
from panictool.cmd_verify import VERIFY, verify_cmd

app = typer.Typer(
    help="Panic-button installer tools: plan the radio link, flash, provision and rekey buttons.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"panictool {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Panic-button installer tools."""


app.command("airtime")(airtime)
app.command("flash", **FLASH)(flash)
app.command("provision", **PROVISION)(provision)
app.command("rekey", **REKEY)(rekey)
app.command("verify", **VERIFY)(verify_cmd)
app.command("console", epilog=CONSOLE_EPILOG)(console)
app.command("sim", **SIM)(sim)
