"""The message catalogues (English and Bahasa Indonesia) the pages and the server share."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

LANGS = ("id", "en")


@cache
def catalogue(lang: str) -> dict[str, str]:
    if lang not in LANGS:
        lang = "en"
    text = resources.files("panicconsole").joinpath("static", "i18n", f"{lang}.json").read_text(
        encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return {k: str(v) for k, v in doc.items()}


def t(lang: str, key: str, **kw: Any) -> str:
    """The message ``key`` in ``lang`` with ``{name}`` fields filled (the key if missing)."""
    text = catalogue(lang).get(key) or catalogue("en").get(key) or key
    try:
        return text.format(**kw) if kw else text
    except (KeyError, IndexError, ValueError):
        return text
