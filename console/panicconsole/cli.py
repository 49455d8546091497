"""`panicconsole`: the police dispatch console's command line (the precinct's administrator)."""

import typer

from panicconsole import __version__
from panicconsole.cmd_audit import app as audit_app
from panicconsole.cmd_cert import app as cert_app
from panicconsole.cmd_config import app as config_app
from panicconsole.cmd_gateway import app as gateway_app
from panicconsole.cmd_plan import app as plan_app
from panicconsole.cmd_serve import serve
from panicconsole.cmd_sites import app as sites_app
from panicconsole.cmd_user import app as user_app

app = typer.Typer(
    help="Police dispatch console: operators see, take and close panic-button alarms that "
         "gateways post; this command runs it and administers it.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"panicconsole {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Police dispatch console."""


app.command("serve")(serve)
app.add_typer(user_app, name="user")
app.add_typer(plan_app, name="plan")
app.add_typer(sites_app, name="sites")
app.add_typer(gateway_app, name="gateway")
app.add_typer(audit_app, name="audit")
app.add_typer(config_app, name="config")
app.add_typer(cert_app, name="cert")
