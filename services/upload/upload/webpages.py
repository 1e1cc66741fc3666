"""The web app's HTML pages, assembled once from the layout every page shares.

`templates/layout.html` is the head and the site header (with `templates/navigation.html`,
the main navigation and the account form, on every page but the sign-in); each page's own
`templates/<page>.html` is its main content and footer. A page is the layout, with its
title and its scripts, followed by its content: assembled when this module is imported,
then served from memory with an ETag and `Cache-Control: no-cache`, so a browser keeps
it and revalidates it with one small request, as it would a static file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from string import Template

from aiohttp import web

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Page:
    """One page: its title, its own script (under /static/) and whether it shows the
    main navigation and the account form (whose script, account.js, comes with them)."""

    title: str
    script: str
    navigation: bool = True


PAGES = {
    "index.html": Page("Upload", "uploads.js"),
    "history.html": Page("History", "history.js"),
    "job.html": Page("Job", "job.js"),
    "api.html": Page("API", "apidocs.js"),
    "signin.html": Page("Sign in", "signin.js", navigation=False),
}


@dataclass(frozen=True)
class Rendered:
    body: bytes
    etag: str


def render(name: str) -> str:
    """The whole HTML of page `name` (a key of PAGES)."""
    page = PAGES[name]
    scripts = [*(["account.js"] if page.navigation else []), page.script]
    layout = Template((TEMPLATES / "layout.html").read_text())
    head = layout.substitute(
        title=page.title,
        scripts="\n".join(
            f'  <script type="module" src="/static/{script}"></script>' for script in scripts
        ),
        navigation=(TEMPLATES / "navigation.html").read_text() if page.navigation else "",
    )
    return head + (TEMPLATES / name).read_text()


def _rendered(name: str) -> Rendered:
    body = render(name).encode()
    return Rendered(body, hashlib.sha256(body).hexdigest()[:32])


_RENDERED = {name: _rendered(name) for name in PAGES}


def page_response(request: web.Request, name: str) -> web.Response:
    """Page `name`, or 304 Not Modified when the browser has it already."""
    page = _RENDERED[name]
    headers = {"Cache-Control": "no-cache"}
    if any(tag.value in (page.etag, "*") for tag in request.if_none_match or ()):
        response = web.Response(status=304, headers=headers)
    else:
        response = web.Response(
            body=page.body, content_type="text/html", charset="utf-8", headers=headers
        )
    response.etag = page.etag
    return response
