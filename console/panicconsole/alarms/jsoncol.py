"""JSON in TEXT columns: written compact, read back tolerantly (a bad stored value must not
take a screen down)."""

from __future__ import annotations

import json
from typing import Any


def dumps(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def loads(v: str | None, default: Any = None) -> Any:
    if v is None:
        return default
    try:
        return json.loads(v)
    except ValueError:
        return default
