"""A real HTTP receiver of webhooks on 127.0.0.1, for the unit, mesh and browser tests
of their delivery: `receiving()` serves one for as long as it is entered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from upload.schemas import WebhookNotification


@dataclass
class Receiver:
    """An HTTP receiver answering each POST with the next of `answers` (then the last);
    a 3xx redirects to its `/elsewhere`, which it also serves."""

    answers: list[int] = field(default_factory=lambda: [200])
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        WebhookNotification.model_validate_json(body)  # as the OpenAPI document says
        self.received.append((dict(request.headers), body))
        status = self.answers[min(len(self.received), len(self.answers)) - 1]
        if 300 <= status < 400:
            raise web.HTTPFound(location=f"{self.url}/elsewhere")
        return web.Response(status=status, text="ok" if status < 300 else "no")


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    """A receiver at `<url>/hook` (and `<url>/elsewhere`), served until the block ends."""
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    app.router.add_post("/elsewhere", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}"
    try:
        yield found
    finally:
        await runner.cleanup()
