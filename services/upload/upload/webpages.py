"""The web app's HTML pages, assembled once from the layout every page shares.

`templates/layout.html` is the head and the site header (with `templates/navigation.html`,
the main navigation and the account form), `templates/footer.html` the footer (with links
to the other pages); each page's own `templates/<page>.html` is its main content. The
sign-in page has neither navigation nor footer. A page is assembled when this module is
imported, then served from memory with an ETag and `Cache-Control: no-cache`, so a
browser keeps it and revalidates it with one small request, as it would a static file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from string import Template

from aiohttp import web

TEMPLATES = Path(__file__).parent / "templates"
FOOTER_LINKS = (("/", "Upload"), ("/history", "History"), ("/api/docs", "API documentation"))
"""The pages the footer links to (each page's footer: all but itself)."""


@dataclass(frozen=True)
class Page:
    """One page: its title, its own script (under /static/), where it is served (None:
    by a handler of its own), whether it is for people signed in only, and whether it
    shows the navigation, the account form (whose script, account.js, comes with it)
    and the footer."""

    title: str
    script: str
    path: str | None
    signed_in: bool = True
    navigation: bool = True


PAGES = {
    "index.html": Page("Upload", "uploads.js", "/"),
    "history.html": Page("History", "history.js", "/history"),
    "job.html": Page("Job", "job.js", None),  # /jobs/{job_id}: resolves a short id first
    "api.html": Page("API", "apidocs.js", "/api/docs", signed_in=False),
    "signin.html": Page("Sign in", "signin.js", None, signed_in=False, navigation=False),
}


@dataclass(frozen=True)
class Rendered:
    body: bytes
    etag: str


def render(name: str) -> str:
    """The whole HTML of page `name` (a key of PAGES)."""
    page = PAGES[name]
    scripts = [*(["account.js"] if page.navigation else []), page.script]
    head = _template("layout.html").substitute(
        title=page.title,
        scripts="\n".join(
            f'  <script type="module" src="/static/{script}"></script>' for script in scripts
        ),
        navigation=(TEMPLATES / "navigation.html").read_text() if page.navigation else "",
    )
    return head + (TEMPLATES / name).read_text() + (_footer(page) if page.navigation else "")


def _footer(page: Page) -> str:
    links = " · ".join(
        f'<a href="{href}">{text}</a>' for href, text in FOOTER_LINKS if href != page.path
    )
    return _template("footer.html").substitute(links=links)


def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text())


def _rendered(name: str) -> Rendered:
    body = render(name).encode()
    return Rendered(body, hashlib.sha256(body).hexdigest()[:32])


_RENDERED = {name: _rendered(name) for name in PAGES}


def page_response(request: web.Request, name: str, *, status: int = 200) -> web.Response:
    """Page `name`, or 304 Not Modified when the browser has it already (a page sent with
    an error `status`, such as the job page for no job, is always sent)."""
    page = _RENDERED[name]
    headers = {"Cache-Control": "no-cache"}
    if status != 200:
        return web.Response(
            status=status, body=page.body, content_type="text/html", charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )  # fmt: skip
    if any(tag.value in (page.etag, "*") for tag in request.if_none_match or ()):
        response = web.Response(status=304, headers=headers)
    else:
        response = web.Response(
            body=page.body, content_type="text/html", charset="utf-8", headers=headers
        )
    response.etag = page.etag
    return response
