"""The web app's pages, signing in and out, and who a request acts for."""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web

from . import schemas
from .guard import PRINCIPAL, SIGN_IN_PATH, SIGN_OUT_PATH, principal_of
from .keys import GUARD
from .openapi import Doc, documented
from .routes import routes
from .session import sign_in, sign_out
from .webpages import PAGES, Page, page_response

# --------------------------------------------------------------------------- pages


_NEXT = re.compile(r"^/(?![/\\])[A-Za-z0-9/_.~%?=&-]{0,512}$")
"""Where the sign-in may send the browser back to: a path on this site (not `//host`)."""


def _serve(name: str, page: Page, path: str) -> None:
    """Serve page `name` at `path`. A page for people signed in, to a request without a
    principal (tokens on, not signed in): the sign-in page instead, which comes back."""

    async def handler(request: web.Request) -> web.Response:
        if page.signed_in and PRINCIPAL not in request:
            target = quote(request.path_qs, safe="/?=&")
            raise web.HTTPSeeOther(f"{SIGN_IN_PATH}?next={target}")
        return page_response(request, name)

    routes.get(path)(handler)


for _name, _served in PAGES.items():
    if _served.path is not None:  # the sign-in page has a handler of its own
        _serve(_name, _served, _served.path)


# --------------------------------------------------------------------------- sign-in


@routes.get(SIGN_IN_PATH)
async def sign_in_page(request: web.Request) -> web.Response:
    if not request.app[GUARD].tokens.enabled:
        # Nothing to sign in with: everyone is `local`, or the authenticating proxy signs
        # people in (and this request did not come through it).
        if PRINCIPAL in request:
            raise web.HTTPSeeOther("/")
        raise web.HTTPUnauthorized(text="sign in through the authenticating proxy\n")
    return page_response(request, "signin.html")


@routes.post(SIGN_IN_PATH)
async def sign_in_form(request: web.Request) -> web.Response:
    """The sign-in form: a token, and where to go next. A valid token starts a session
    (the encrypted cookie) and goes there; a wrong one back to the form, saying so. The
    guard refused it already if another site sent it."""
    guard = request.app[GUARD]
    form = await request.post()
    token, target = form.get("token"), form.get("next")
    target = target if isinstance(target, str) and _NEXT.match(target) else "/"
    found = guard.tokens.identify(token.strip()) if isinstance(token, str) else None
    if found is None:
        raise web.HTTPSeeOther(f"{SIGN_IN_PATH}?failed=1&next={quote(target, safe='/')}")
    await sign_in(request, *found)
    raise web.HTTPSeeOther(target)


@routes.post(SIGN_OUT_PATH)
async def sign_out_form(request: web.Request) -> web.Response:
    await sign_out(request)
    raise web.HTTPSeeOther(SIGN_IN_PATH if request.app[GUARD].tokens.enabled else "/")


@routes.get("/api/v1/me")
@documented(
    Doc(
        "Who this request acts for",
        {200: ("the principal, and whether the server needs one", schemas.Me)},
        tags=("service",),
    )
)
async def me(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = {
        "principal": principal.name,
        "auditor": principal.auditor,
        "sign_in": request.app[GUARD].tokens.enabled,
    }
    return web.json_response(body)
