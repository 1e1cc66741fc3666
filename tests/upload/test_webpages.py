"""The web app's pages, assembled from the shared layout: whole documents, each with its
own title and script, and revalidated by ETag (served with `no-cache`, like a static
file); the job page's short ids. The browser tests (tests/e2e/test_browser.py) drive them;
tests/security/test_id_prefix.py the short ids of two principals on a real mesh."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from upload.guard import PRINCIPAL, Principal
from upload.jobs import Jobs
from upload.keys import JOBS
from upload.pages import job_page
from upload.webpages import PAGES, page_response, render


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_page_is_a_whole_document_with_its_title_and_script(name: str) -> None:
    page, html = PAGES[name], render(name)
    assert html.startswith('<!doctype html>\n<html lang="en">\n<head>\n')
    assert html.rstrip().endswith("</body>\n</html>")
    assert f"<title>{page.title} · imagemesh</title>" in html
    assert f'<script type="module" src="/static/{page.script}"></script>' in html
    assert html.count('<main id="main">') == 1
    assert ('id="account"' in html) is page.navigation
    assert ("/static/account.js" in html) is page.navigation


def test_a_page_is_revalidated_by_its_etag() -> None:
    first = page_response(make_mocked_request("GET", "/"), "index.html")
    assert first.status == 200
    assert first.headers["Cache-Control"] == "no-cache"
    assert first.content_type == "text/html"
    assert first.etag is not None
    assert first.body == render("index.html").encode()

    again = make_mocked_request("GET", "/", headers={"If-None-Match": f'"{first.etag.value}"'})
    unchanged = page_response(again, "index.html")
    assert unchanged.status == 304
    assert unchanged.body is None

    other = make_mocked_request("GET", "/", headers={"If-None-Match": f'"{first.etag.value}"'})
    assert page_response(other, "history.html").status == 200


class _Jobs:
    """`Jobs` as `jobs_with_prefix` reads it: the reader's indexed jobs, none live."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.asked: list[str | None] = []

    async def recent(self, *, owner: str | None, search: str, **_: Any) -> dict[str, Any]:
        self.asked.append(owner)
        return {"jobs": [{"id": job_id} for job_id in self.ids], "next": None}

    def live_starting_with(self, prefix: str, owner: str | None) -> list[str]:
        return []


async def _job_page(path_id: str, ids: list[str]) -> tuple[web.StreamResponse, _Jobs]:
    jobs = _Jobs(ids)
    app = web.Application()
    app[JOBS] = cast(Jobs, jobs)
    request = make_mocked_request("GET", f"/jobs/{path_id}", match_info={"job_id": path_id},
                                  app=app)  # fmt: skip
    request[PRINCIPAL] = Principal("dora")
    try:
        return await job_page(request), jobs
    except web.HTTPException as redirect:
        return redirect, jobs


async def test_the_job_page_sends_a_short_id_on_to_the_one_job_or_the_choices() -> None:
    one = "3f2a9c1d-0000-4000-8000-000000000001"
    other = "3f2a9c1d-0000-4000-8000-000000000002"
    found, jobs = await _job_page("3F2A9C1D", [one, "9b04e7aa-0000-4000-8000-000000000003"])
    assert (found.status, found.headers["Location"]) == (302, f"/jobs/{one}")
    assert jobs.asked == ["dora"]  # the reader's jobs only
    both, _ = await _job_page("3f2a9c1d", [one, other])
    assert (both.status, both.headers["Location"]) == (302, "/history?search=3f2a9c1d")
    none, _ = await _job_page("3f2a9c1d", [])
    assert none.status == 404
    assert none.content_type == "text/html"
    whole, jobs = await _job_page(one, [])
    assert whole.status == 200
    assert jobs.asked == []  # a whole id is the page itself: its script reads the job
    odd, jobs = await _job_page("not-an-id", [])
    assert (odd.status, jobs.asked) == (200, [])
