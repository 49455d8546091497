"""The least any Wi-Fi gateway can do: take an HTTP POST, POST it on to dispatch, answer.

Run as its own process (``python bench/zero_relay.py DISPATCH_URL``) beside the real gateway
in the latency benchmark. It prints ``{"port": N}`` when listening. Each ``POST /relay``
carries the incident id in ``X-Incident``; the relay sends dispatch a JSON body of the size
of a real dispatch document with that id, over one keep-alive aiohttp session (as the
gateway's forwarder does), and answers 200 once dispatch has answered.

No verification, no replay window, no store, no fsync: its press-to-dispatch is the floor
of the Wi-Fi path for any gateway built on the same HTTP stack, so its ratio against a bare
POST shows how much of "<= 2x floor" is left for the gateway's own work.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import ClientSession, web

PAD = "x" * 900  # a dispatch document is about 1 KB


async def main(dispatch_url: str) -> None:
    session = ClientSession()

    async def relay(request: web.Request) -> web.Response:
        await request.read()
        body = json.dumps({"incident_id": request.headers.get("X-Incident", ""), "pad": PAD})
        async with session.post(dispatch_url, data=body,
                                headers={"Content-Type": "application/json"}) as r:
            await r.read()
        return web.Response(body=b"\x00" * 18, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_post("/relay", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"port": port}), flush=True)
    try:
        await asyncio.Event().wait()  # until the benchmark kills the process
    finally:
        await session.close()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
