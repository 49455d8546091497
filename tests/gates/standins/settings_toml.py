# CircuitPython's reading of settings.toml for os.getenv (os.py imports this when the
# board's filesystem has the file): ``key = value`` lines before any [table]; a value is a
# string in double quotes (escapes \n \t \r \" \\ \uXXXX) or an integer; anything else is
# an error, as on CircuitPython.
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _string(text):
    out = ""
    i = 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return out
        if c == "\\":
            i += 1
            e = text[i]
            if e == "u":
                out += chr(int(text[i + 1:i + 5], 16))
                i += 4
            elif e in _ESCAPES:
                out += _ESCAPES[e]
            else:
                raise ValueError("Invalid escape in settings.toml")
        else:
            out += c
        i += 1
    raise ValueError("Unterminated string in settings.toml")


def lookup(text, key):
    """(True, value) for ``key`` in the file's ``text``, else (False, None)."""
    for line in text.split("\n"):
        line = line.strip()
        if line.startswith("["):
            break
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        if k.strip() != key:
            continue
        v = v.strip()
        if v.startswith('"'):
            return True, _string(v)
        try:
            return True, int(v.split("#", 1)[0].strip(), 0)
        except ValueError:
            raise ValueError("Invalid value for " + key + " in settings.toml (strings and "
                             "integers only)") from None
    return False, None
