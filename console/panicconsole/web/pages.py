"""The HTML pages (the operators' app and the admin page), filled in the reader's language
on the server, so a page shows words before any script runs."""

from __future__ import annotations

import html as html_mod
from importlib import resources
from pathlib import Path

from aiohttp import web

from panicconsole import auth, i18n
from panicconsole.web.context import Context

STATIC = Path(str(resources.files("panicconsole").joinpath("static")))


def render(name: str, page_lang: str, **fields: str) -> str:
    """``static/<name>`` with ``{{field}}`` filled (escaped) and every ``{{t:key}}`` replaced
    by the message in ``page_lang``."""
    text = (STATIC / name).read_text(encoding="utf-8")
    for k, v in fields.items():
        text = text.replace("{{" + k + "}}", html_mod.escape(v, quote=True))
    out, pos = [], 0
    while True:
        i = text.find("{{t:", pos)
        if i < 0:
            out.append(text[pos:])
            break
        j = text.find("}}", i)
        out.append(text[pos:i])
        out.append(html_mod.escape(i18n.t(page_lang, text[i + 4:j]), quote=True))
        pos = j + 2
    return "".join(out)


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, content_type="text/html", charset="utf-8", status=status)


class Pages:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/favicon.ico", self.favicon), web.get("/", self.app),
                web.get("/admin", self.admin)]

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def app(self, request: web.Request) -> web.Response:
        s = request["session"]
        return html(render("app.html", s["lang"], title=self.ctx.cfg.console["name"],
                           lang=s["lang"]))

    async def admin(self, request: web.Request) -> web.Response:
        s = request["session"]
        title = self.ctx.cfg.console["name"]
        if not auth.allowed(s["role"], "admin"):
            await self.ctx.refuse(request, 403, "forbidden", "admin page")
            return html(render("forbidden.html", s["lang"], lang=s["lang"], title=title), 403)
        return html(render("admin.html", s["lang"], title=title, lang=s["lang"]))
