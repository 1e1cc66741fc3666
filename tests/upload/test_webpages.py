"""The web app's pages, assembled from the shared layout: whole documents, each with its
own title and script, and revalidated by ETag (served with `no-cache`, like a static
file). The browser tests (tests/e2e/test_browser.py) drive them."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

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
