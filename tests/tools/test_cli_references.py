"""Every `panictool ...` / `panicgw ...` command line the product shows a user exists.

Diag hints, error messages, help texts and the docs tell people what to type; a renamed
option there is a dead end at 3 a.m. (a hint once said `panictool flash --bridge`, which
was never an option). This walks each quoted command line down the real click command tree
and checks the subcommands and every option it names.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
import typer.main

from panicgw.cli import app as gw_app
from panictool.cli import app as tool_app

ROOT = Path(__file__).resolve().parents[2]
TREES = {"panicgw": typer.main.get_command(gw_app),
         "panictool": typer.main.get_command(tool_app)}
QUOTED = re.compile(r"`((?:panicgw|panictool) [^`]+)`")
SHELL = re.compile(r"^\s*(?:\$ )?((?:panicgw|panictool) .*)$")
WORD = re.compile(r"^[a-z][a-z-]*$")


def _sources() -> list[Path]:
    files = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
    for pkg in ("gateway/panicgw", "tools/panictool"):
        files += sorted((ROOT / pkg).rglob("*.py"))
    return files


def _command_lines(path: Path) -> list[tuple[int, str]]:
    text = path.read_text()
    if path.suffix == ".py":  # join implicitly concatenated string literals across lines
        text = re.sub(r"[\"']\s*\n\s*f?[\"']", "", text)
    found = [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in QUOTED.finditer(text)]
    if path.suffix == ".md":  # command lines in fenced blocks, with \ continuations
        fenced, buf, start = False, "", 0
        for no, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced, buf = not fenced, ""
                continue
            if not fenced:
                continue
            if buf:
                buf += " " + line.strip()
            else:
                m = SHELL.match(line)
                if not m:
                    continue
                buf, start = m.group(1), no
            if buf.endswith("\\"):
                buf = buf[:-1]
                continue
            found.append((start, buf))
            buf = ""
    return found


def _problem(line: str) -> str | None:
    words = line.split(" #")[0].split()
    cmd = TREES[words[0]]
    path = [words[0]]
    rest = words[1:]
    while rest and hasattr(cmd, "commands") and rest[0] in cmd.commands:
        cmd = cmd.commands[rest[0]]
        path.append(rest.pop(0))
    if hasattr(cmd, "commands") and rest and WORD.match(rest[0]):
        return f"{' '.join(path)} has no command {rest[0]!r}"
    opts = {"--help"}
    for p in cmd.params:
        opts.update(getattr(p, "opts", []))
        opts.update(getattr(p, "secondary_opts", []))
    for w in rest:
        w = w.strip("[](),.;'\"")
        if re.match(r"^--?[a-zA-Z]", w) and w.split("=")[0] not in opts:
            return f"{' '.join(path)} has no option {w.split('=')[0]}"
    return None


CASES = [(p, no, line) for p in _sources() for no, line in _command_lines(p)]


def test_the_sources_quote_many_commands() -> None:
    assert len(CASES) > 100  # the extraction works, not an empty pass


@pytest.mark.parametrize(("path", "no", "line"), CASES,
                         ids=[f"{p.relative_to(ROOT)}:{n}" for p, n, _ in CASES])
def test_quoted_command_exists(path: Path, no: int, line: str) -> None:
    problem = _problem(line)
    assert problem is None, f"{path.relative_to(ROOT)}:{no}: `{line}`: {problem}"


def _commands(cmd, path: list[str]):  # noqa: ANN001, ANN202 - click objects
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, [*path, name])


HELP_CASES = [(path, cmd) for root, tree in TREES.items() for path, cmd in _commands(tree, [root])]


@pytest.mark.parametrize(("path", "cmd"), HELP_CASES, ids=[" ".join(p) for p, _ in HELP_CASES])
def test_help_shows_config_section_names(path: list[str], cmd) -> None:  # noqa: ANN001
    """rich reads "[gateway]" in a help text as a style tag and drops it; written "\\[gateway]"
    it is shown. Every bracketed word a help text names must reach the screen."""
    from typer.testing import CliRunner

    texts = [cmd.help or "", cmd.epilog or ""] + [getattr(p, "help", "") or ""
                                                  for p in cmd.params]
    wanted = {m.replace("\\[", "[") for t in texts for m in re.findall(r"\\?\[[a-z_]+\]", t)}
    if not wanted:
        return
    app = tool_app if path[0] == "panictool" else gw_app
    out = CliRunner().invoke(app, [*path[1:], "--help"], env={"COLUMNS": "200"}).output
    for w in sorted(wanted):
        assert w in out, f"{' '.join(path)} --help lost {w}"
