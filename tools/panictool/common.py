"""Exit codes, error reporting and progress bars shared by the panictool commands.

Exit codes (the same for every command, documented in docs/installing.md):
    0  done, every check passed
    1  a check failed (files on the board differ, the gateway did not hear the test, ...)
    2  bad command line (typer's own usage errors use 2 as well)
    3  drive problem: no CIRCUITPY / UF2 drive, wrong board id or CircuitPython version
    4  serial problem: no port, port busy, no permission, the board does not answer
    5  file problem: cannot write to the drive or an output file, not enough space
    6  registry problem: gateway database or export file unusable, bad site details
"""

from __future__ import annotations

import inspect
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

OK = 0
CHECK_FAILED = 1
USAGE = 2
DRIVE = 3
SERIAL = 4
FILES = 5
REGISTRY = 6

err_console = Console(stderr=True)


def fail(code: int, message: str, hint: str = "", as_json: bool = False,
         extra: dict[str, Any] | None = None) -> NoReturn:
    """Print an error (JSON on stdout for scripts, else text on stderr) and exit."""
    if as_json:
        doc: dict[str, Any] = {"ok": False, "exit_code": code, "error": message}
        if hint:
            doc["hint"] = hint
        doc.update(extra or {})
        typer.echo(json.dumps(doc))
    else:
        typer.echo(f"error: {message}", err=True)
        if hint:
            typer.echo(f"  what to do: {hint}", err=True)
    raise typer.Exit(code)


def byte_progress(quiet: bool = False) -> Progress:
    """A bytes progress bar on stderr (stdout stays clean for --json)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TimeRemainingColumn(), console=err_console,
                    disable=quiet or not sys.stderr.isatty())


def count_progress(quiet: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
                    console=err_console, disable=quiet or not sys.stderr.isatty())


@contextmanager
def waiting(description: str, total_s: float, quiet: bool = False
            ) -> Iterator[Callable[[float | None], None]]:
    """Progress for a wait of up to ``total_s`` seconds, on stderr: a bar that counts the
    seconds on a terminal, else one line saying what is awaited and for how long (so a log
    shows why nothing happens for a minute). Yields ``tick(seconds_waited or None)``; None
    counts from the start of the wait."""
    if quiet:
        yield lambda _s: None
        return
    if not sys.stderr.isatty():
        typer.echo(f"{description} (up to {total_s:.0f} s) ...", err=True)
        yield lambda _s: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                  console=err_console, transient=True) as prog:
        task = prog.add_task(description, total=total_s)
        start = time.monotonic()
        last = [0.0]

        def tick(waited: float | None = None) -> None:
            now = time.monotonic() - start if waited is None else waited
            if now - last[0] >= 0.2:
                last[0] = now
                prog.update(task, completed=min(now, total_s))

        yield tick


def unwrap(text: str) -> str:
    """Join hard-wrapped paragraph lines (rich re-wraps help to the terminal) but keep
    indented lines, such as examples, on lines of their own."""
    out: list[str] = []
    for para in text.strip("\n").split("\n\n"):
        lines = para.splitlines()
        if any(ln.startswith("  ") for ln in lines):
            out.append(para)
        else:
            out.append(" ".join(ln.strip() for ln in lines))
    return "\n\n".join(out)


def command_help(func: Any, epilog: str) -> dict[str, str]:
    """help/epilog keyword arguments for ``app.command`` from a docstring and an epilog."""
    return {"help": unwrap(inspect.cleandoc(func.__doc__ or "")), "epilog": unwrap(epilog)}
