"""The web app's pages, signing in and out, and who a request acts for."""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web

from . import schemas
from .guard import PRINCIPAL, SIGN_IN_PATH, SIGN_OUT_PATH, principal_of
from .job_prefix import ID_PREFIX_PATTERN, jobs_with_prefix
from .keys import GUARD, JOBS
from .openapi import Doc, documented
from .routes import routes
from .session import sign_in, sign_out
from .webpages import PAGES, Page, page_response

# --------------------------------------------------------------------------- pages


_NEXT = re.compile(r"^/(?![/\\])[A-Za-z0-9/_.~%?=&-]{0,512}$")
"""Where the sign-in may send the browser back to: a path on this site (not `//host`)."""
_ID_PREFIX = re.compile(ID_PREFIX_PATTERN)
_FULL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _serve(name: str, page: Page, path: str) -> None:
    """Serve page `name` at `path`. A page for people signed in, to a request without a
    principal (tokens on, not signed in): the sign-in page instead, which comes back."""

    async def handler(request: web.Request) -> web.Response:
        if page.signed_in:
            _signed_in(request)
        return page_response(request, name)

    routes.get(path)(handler)


def _signed_in(request: web.Request) -> None:
    """Nothing, or a redirect to the sign-in page, which comes back to this one."""
    if PRINCIPAL not in request:
        target = quote(request.path_qs, safe="/?=&")
        raise web.HTTPSeeOther(f"{SIGN_IN_PATH}?next={target}")


for _name, _served in PAGES.items():
    if _served.path is not None:  # the sign-in and job pages have handlers of their own
        _serve(_name, _served, _served.path)


@routes.get("/jobs/{job_id}")
async def job_page(request: web.Request) -> web.Response:
    """The job page. A short id (the 8 characters shown; 6 at least) of one of the
    reader's jobs is sent on to the whole id; one several of them start with, to the
    history searching for it (which lists them); one none does, the page as 404 (its
    script says no such job). Only the reader's jobs are looked at (an auditor's: all),
    as `GET /api/v1/jobs?id_prefix=` does: another's job never resolves, nor makes a
    prefix ambiguous."""
    _signed_in(request)
    given = request.match_info["job_id"].lower()
    if _FULL_ID.match(given) or not _ID_PREFIX.match(given):
        return page_response(request, "job.html")  # its script reads the job, or says why not
    found = await jobs_with_prefix(request.app[JOBS], given, principal_of(request))
    ids = [str(job["id"]) for job in found["jobs"]]
    headers = {"Cache-Control": "private, no-store"}  # a prefix may match more jobs later
    if len(ids) == 1:
        raise web.HTTPFound(f"/jobs/{ids[0]}", headers=headers)
    if ids:
        raise web.HTTPFound(f"/history?search={given}", headers=headers)
    return page_response(request, "job.html", status=404)


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
