"""A principal's own webhook signing key: what its receivers check signatures with.

Each principal reads only its own key (derived from UPLOAD_WEBHOOK_SECRET, its name and
its key's generation, `signing.principal_key`): there is no way to ask for another's,
auditors included (an auditor reads every job, but signs nothing for anybody). Without
tokens everyone is `local` and shares one key, as everyone shares every job.
"""

from __future__ import annotations

from aiohttp import web

from . import schemas
from .errors import ApiError
from .guard import principal_of
from .keys import SETTINGS
from .openapi import Doc, documented, error
from .routes import routes


@routes.get("/api/v1/webhooks/secret")
@documented(
    Doc(
        "Your webhook signing key",
        {
            200: ("the key this principal's webhooks are signed with", schemas.WebhookSecret),
            404: error("webhooks are off on this server: no UPLOAD_WEBHOOK_SECRET"),
        },
        description="Webhooks (a job's `callback_url`) carry `X-Imagemesh-Signature: "
        "sha256=<hex HMAC-SHA256 of the exact body bytes, keyed with this key's text>`. "
        "The key is the caller's own (derived from the server's secret and the "
        "principal's name): another principal's cannot be read. An operator rotates one "
        "principal's key by raising its `generation` (UPLOAD_WEBHOOK_KEY_GENERATIONS). "
        "Answered `no-store`.",
        tags=("jobs",),
    )
)
async def webhook_secret(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    principal = principal_of(request).name
    key = settings.webhook_key(principal)
    if key is None:
        raise ApiError(404, "webhooks_off", "webhooks are off on this server")
    body = {
        "principal": principal,
        "secret": key,
        "generation": settings.webhook_key_generation(principal),
        "signature_header": "X-Imagemesh-Signature",
        "algorithm": "sha256",
    }
    return web.json_response(body, headers={"Cache-Control": "private, no-store"})
