"""``python -m panicconsole``: the same as the ``panicconsole`` command."""

from panicconsole.cli import app

app(prog_name="panicconsole")
