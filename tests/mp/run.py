"""MicroPython test runner: imports every mp_test_*.py beside it and runs its test_* functions.

Runs under `micropython -X heapsize=64k` with MICROPYPATH=firmware/lib:tests/mp, so only what a
device has is importable. Prints one line per failure and a closing "N passed, N failed" line;
exits 1 on any failure. Optional argv: module names to run instead of all.
"""

import gc
import os
import sys


def _modules():
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    names = []
    for name in os.listdir(here):
        if name.startswith("mp_test_") and name.endswith(".py"):
            names.append(name[:-3])
    names.sort()
    return names


def main():
    wanted = sys.argv[1:] or _modules()
    passed = 0
    failed = 0
    for modname in wanted:
        try:
            mod = __import__(modname)
        except Exception as e:  # an import error is a failure of the whole module
            failed += 1
            print("FAIL %s (import): %s: %s" % (modname, type(e).__name__, e))
            continue
        for name in sorted(dir(mod)):
            if not name.startswith("test_"):
                continue
            try:
                getattr(mod, name)()
                passed += 1
            except Exception as e:
                failed += 1
                print("FAIL %s.%s: %s: %s" % (modname, name, type(e).__name__, e))
            gc.collect()
        del sys.modules[modname]
        gc.collect()
    print("micropython: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


main()
