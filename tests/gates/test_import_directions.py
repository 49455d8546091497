"""Device-side imports point one way (issue 12.6), read from the sources (every import
statement, at any depth, guarded or not):

* firmware code imports only firmware/lib's packages, CircuitPython's built-in modules (the
  ones the simulated board has: panicsim.fakes) and the CircuitPython libraries the
  manifest ships for its role. Device logic (firmware/lib) imports no hardware module and
  no library: only the glue (code.py, boot.py, hal_*.py) does. panicproto imports only
  itself, panicbutton and panicbridge only themselves and panicproto, a role's glue only
  its role's package. The one stdlib import, ``hmac`` in panicproto.mac, sits under the
  CPython check, so no board reaches it.
* the simulator (tools/panicsim) imports nothing of the gateway (panicgw), and the firmware
  nothing of the tools or the gateway.
* no import cycle among the modules of firmware/lib or of tools/panicsim.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from panicimage import manifest
from panicsim import fakes

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "firmware" / "lib"
SIM = ROOT / "tools" / "panicsim"
BUILTINS = set(fakes.HOST) | set(fakes.BUILTINS) | set(fakes.WIFI) | {"ssl"}
HARDWARE = {"board", "digitalio", "keypad", "microcontroller", "watchdog", "alarm",
            "analogio", "busio", "usb_cdc", "wifi", "socketpool", "ssl", "supervisor"}
CORE = BUILTINS - HARDWARE  # what device logic may use besides our packages
OWN = {"panicproto": {"panicproto"}, "panicbutton": {"panicbutton", "panicproto"},
       "panicbridge": {"panicbridge", "panicproto"}}
GLUE = {"button": "panicbutton", "bridge": "panicbridge"}


def _imports(path: Path, tree: ast.Module | None = None) -> list[tuple[str, ast.stmt]]:
    """(absolute dotted name, node) of every import in ``path``; ``from a import b`` gives
    ``a.b`` when that is a module of ours, else ``a``."""
    out = []
    for node in ast.walk(tree or ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((sub if _module_file(sub) else node.module, node))
    return out


def _module_file(name: str) -> Path | None:
    for base in (LIB, SIM.parent):
        p = base.joinpath(*name.split("."))
        if (p / "__init__.py").is_file():
            return p / "__init__.py"
        if p.with_suffix(".py").is_file():
            return p.with_suffix(".py")
    return None


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _guarded_by_cpython_check(tree: ast.Module, target: ast.stmt) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "cpython" in ast.unparse(node.test) \
                and any(n is target for b in node.body for n in ast.walk(b)):
            return True
    return False


@pytest.mark.parametrize("path", sorted(LIB.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_device_logic_imports_only_its_packages_and_core_builtins(path: Path) -> None:
    pkg = path.relative_to(LIB).parts[0]
    tree = ast.parse(path.read_text())
    for name, node in _imports(path, tree):
        top = name.split(".")[0]
        if top in OWN:
            assert top in OWN[pkg], f"{path.name} ({pkg}) imports {name}"
        elif name == "hmac" and path.name == "mac.py":
            assert _guarded_by_cpython_check(tree, node), "import hmac must be CPython-only"
        else:
            assert top in CORE, f"{path.relative_to(ROOT)} imports {name}: not a core " \
                                f"built-in of CircuitPython (hardware belongs in the glue)"


@pytest.mark.parametrize("role", sorted(GLUE))
def test_glue_imports_its_role_builtins_and_shipped_libraries(role: str) -> None:
    allowed = BUILTINS | set(manifest.ROLES[role]["libraries"]) | {GLUE[role], "panicproto"}
    for path in sorted((ROOT / "firmware" / role).glob("*.py")):
        local = {p.stem for p in path.parent.glob("*.py")}
        for name, _ in _imports(path):
            top = name.split(".")[0]
            assert top in allowed or top in local, f"{role}/{path.name} imports {name}"


def test_the_simulator_never_imports_the_gateway() -> None:
    for path in sorted(SIM.rglob("*.py")):
        for name, _ in _imports(path):
            assert name.split(".")[0] != "panicgw", f"{path.relative_to(ROOT)} imports {name}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("base,pattern", [(LIB, "*.py"), (SIM.parent, "panicsim/**/*.py")],
                         ids=["firmware-lib", "panicsim"])
def test_no_import_cycles(base: Path, pattern: str) -> None:
    graph: dict[str, set[str]] = {}
    for path in sorted(base.rglob(pattern) if pattern == "*.py" else base.glob(pattern)):
        me = _module_name(path, base)
        graph[me] = {n for n, _ in _imports(path)
                     if _module_file(n) is not None and n != me
                     and not (path.name == "__init__.py" and n.startswith(me + "."))}
    assert len(graph) > 10
    assert _cycles(graph) == []


def test_cycle_finder_finds_the_old_board_console_cycle() -> None:
    assert _cycles({"panicsim.board": {"panicsim.console"},
                    "panicsim.console": {"panicsim.board", "panicsim.serialport"},
                    "panicsim.serialport": set()}) == [["panicsim.board", "panicsim.console"]]
