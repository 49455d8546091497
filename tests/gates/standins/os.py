# CircuitPython's os: MicroPython's, with getenv() reading settings.toml at the root of the
# board's filesystem (the working directory), as CircuitPython does (settings_toml.py). A
# key absent there falls back to the VM's environment: the boot gate passes its settings
# that way; the board harness (tests/tools/mpboard.py) passes none.
import uos


def __getattr__(name):
    return getattr(uos, name)


def getenv(key, default=None):
    try:
        with open("settings.toml") as f:
            text = f.read()
    except OSError:
        text = None
    if text is not None:
        import settings_toml

        found, v = settings_toml.lookup(text, key)
        if found:
            return v
    v = uos.getenv(key)
    return default if v is None else v
