"""Imports as a CircuitPython board does them: built-in modules, then the board's own
filesystem (``/`` and ``/lib``), and nothing else.

A simulated board runs its firmware from a directory holding exactly what ``panictool
flash`` writes (``panicimage.manifest.write_tree``): ``code.py``, the glue beside it, and
``lib/`` with our packages and the CircuitPython libraries. Every module comes from that
tree or from the board's built-ins (the fake hardware modules and CircuitPython-shaped
stand-ins of its core modules); a module that is neither raises ImportError, as on a
board, so a file missing from the manifest fails in the simulator too. Each run of
``code.py`` gets a fresh module table (a soft reload forgets every import).
"""

from __future__ import annotations

import builtins
import threading
import types
from pathlib import Path
from typing import Any

_CODE_CACHE: dict[tuple[str, int, int], types.CodeType] = {}
_CACHE_LOCK = threading.Lock()


def _compiled(path: Path) -> types.CodeType:
    """Compiled code of a source file (cached by path, mtime and size)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _CACHE_LOCK:
        code = _CODE_CACHE.get(key)
    if code is None:
        code = compile(path.read_text(), str(path), "exec")
        with _CACHE_LOCK:
            _CODE_CACHE[key] = code
    return code


class ModuleSpace:
    """The module table of one run of a board's Python VM."""

    def __init__(self, root: Path, builtin_modules: dict[str, Any], print_fn: Any) -> None:
        self.root = Path(root)
        self.search = [self.root, self.root / "lib"]  # CircuitPython: '', '/', '/lib'
        self.builtin_modules = builtin_modules
        self.modules: dict[str, Any] = {}
        self.imported_files: list[str] = []  # tree-relative paths, in import order
        self._lock = threading.RLock()
        b = dict(builtins.__dict__)
        b["__import__"] = self.import_
        b["print"] = print_fn
        self.builtins = b

    # -- finding and loading -------------------------------------------------------
    def _find(self, name: str) -> tuple[Path, bool] | None:
        """(path, is_package) of ``name`` (dotted) on the board's filesystem."""
        parts = name.split(".")
        for base in self.search:
            d = base.joinpath(*parts[:-1])
            pkg = d / parts[-1]
            if (pkg / "__init__.py").is_file():
                return pkg / "__init__.py", True
            if pkg.is_dir() and len(parts) >= 1 and any(pkg.glob("*.py")):
                return pkg, True  # a namespace package (CircuitPython allows it)
            mod = d / (parts[-1] + ".py")
            if mod.is_file():
                return mod, False
        return None

    def _load(self, name: str) -> Any:
        mod = self.modules.get(name)
        if mod is not None:
            return mod
        if "." not in name and name in self.builtin_modules:
            mod = self.builtin_modules[name]
            self.modules[name] = mod
            return mod
        if "." in name:
            parent = self._load(name.rsplit(".", 1)[0])
            if name in self.modules:  # the parent's __init__ imported it
                return self.modules[name]
            if not hasattr(parent, "__path__"):
                raise ImportError(f"no module named '{name}'")
        found = self._find(name)
        if found is None:
            raise ImportError(f"no module named '{name}'")
        path, is_pkg = found
        mod = types.ModuleType(name)
        mod.__dict__["__builtins__"] = self.builtins
        if is_pkg:
            pkg_dir = path.parent if path.name == "__init__.py" else path
            mod.__path__ = [str(pkg_dir)]
            mod.__package__ = name
        else:
            mod.__package__ = name.rsplit(".", 1)[0] if "." in name else ""
        self.modules[name] = mod
        parent = self.modules.get(name.rsplit(".", 1)[0]) if "." in name else None
        if parent is not None:  # before running it, so circular package imports resolve
            setattr(parent, name.rsplit(".", 1)[1], mod)
        try:
            if path.is_file():
                mod.__file__ = str(path)
                self.imported_files.append(path.relative_to(self.root).as_posix())
                exec(_compiled(path), mod.__dict__)
        except BaseException:
            self.modules.pop(name, None)
            if parent is not None:
                delattr(parent, name.rsplit(".", 1)[1])
            raise
        return mod

    # -- the import statement ------------------------------------------------------
    def import_(self, name: str, globals: dict | None = None, locals: Any = None,
                fromlist: Any = (), level: int = 0) -> Any:
        with self._lock:
            if level:
                pkg = (globals or {}).get("__package__") or ""
                if not pkg and globals and hasattr(globals.get("__path__"), "__iter__"):
                    pkg = globals.get("__name__", "")
                base = pkg.split(".")
                if level > 1:
                    base = base[:-(level - 1)]
                if not base or base == [""]:
                    raise ImportError("relative import outside a package")
                full = ".".join(base) + ("." + name if name else "")
            else:
                full = name
            mod = self._load(full)
            if fromlist:  # MicroPython code may pass True (asyncio's lazy attributes)
                for attr in fromlist if isinstance(fromlist, (list, tuple)) else ():
                    if attr != "*" and not hasattr(mod, attr) and hasattr(mod, "__path__") \
                            and self._find(full + "." + attr) is not None:
                        self._load(full + "." + attr)
                return mod
            if level:
                return mod
            return self.modules[full.split(".")[0]]

    def run(self, filename: str) -> None:
        """Run ``/filename`` (code.py, boot.py) as ``__main__``."""
        path = self.root / filename
        g = {"__name__": "__main__", "__file__": str(path), "__builtins__": self.builtins}
        exec(_compiled(path), g)
