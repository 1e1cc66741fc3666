"""Cross-site requests against the running upload service (no tokens: everyone is
`local`), judged as Go's `http.CrossOriginProtection` judges them: a cross-site form post
is refused; the web app's own post (same-origin), an API client's (curl: neither header)
and a script's session that looked at the home page first are accepted. No cookie or
header a client chooses stands in for a credential."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Mesh
from tests.e2e.helpers import photo, wait_finished
from tests.security.conftest import upload_replica

pytestmark = pytest.mark.e2e

PAGES = ("/", "/history", "/jobs/00000000-0000-4000-8000-000000000000", "/api/docs")


def form(data: bytes, filename: str = "photo.jpg") -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("pipeline", json.dumps([{"op": "grayscale"}]))
    body.add_field("file", data, filename=filename, content_type="image/jpeg")
    return body


async def test_pages_set_no_cookie_without_a_sign_in(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    """The double-submit cookie is gone: nothing a page gives a browser is a credential."""
    for path in PAGES:
        async with http.get(f"{mesh.upload_url}{path}") as page:
            assert page.status == 200, path
            assert "Set-Cookie" not in page.headers, path


async def test_a_cross_site_form_post_is_refused(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    """What another site's <form method=post enctype=multipart/form-data> (or fetch) makes
    the browser send: its own Origin and Sec-Fetch-Site: cross-site."""
    forged = {
        "Origin": "http://evil.example",
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "navigate",
    }
    cookie_pair = {"Cookie": "imagemesh_csrf=" + "c" * 43, "X-CSRF-Token": "c" * 43}
    variants = [
        forged,
        {"Origin": "http://evil.example"},  # a browser without Fetch Metadata
        {"Origin": "null"},  # a sandboxed frame or a data: page
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain is another origin
        {**cookie_pair, "Origin": "http://evil.example"},  # a made-up pair changes nothing
        {**cookie_pair, "Sec-Fetch-Site": "cross-site", "Origin": mesh.upload_url},
    ]
    for headers in variants:
        async with http.post(
            f"{mesh.upload_url}/api/v1/jobs", data=form(photo(40, 30)), headers=headers
        ) as response:
            assert response.status == 403, (headers, await response.text())
            body = await response.json()
            assert body["error"]["code"] == "csrf_failed"
            assert body["error"]["message"]
            assert "Location" not in response.headers


async def test_the_web_apps_own_post_and_api_clients_are_accepted(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    ids = []
    for headers in (
        {"Origin": mesh.upload_url, "Sec-Fetch-Site": "same-origin"},  # the page's script
        {"Origin": mesh.upload_url},  # an older browser: Origin names this host
        {"Sec-Fetch-Site": "none"},  # typed by the user
        {},  # curl, the CLI, scripts: neither header
    ):
        async with http.post(
            f"{mesh.upload_url}/api/v1/jobs", data=form(photo(48, 32)), headers=headers
        ) as response:
            assert response.status == 202, (headers, await response.text())
            ids.append((await response.json())["id"])
    for job_id in ids:
        assert (await wait_finished(http, mesh.upload_url, job_id))["status"] == "succeeded"


async def test_a_script_that_fetched_the_home_page_first_may_post(mesh: Mesh) -> None:
    """A script with a cookie jar (an httpx/requests-like session) looks at `/`, then posts
    a job without Origin or Sec-Fetch headers: not a browser, not refused."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with session.get(f"{mesh.upload_url}/") as page:
            assert page.status == 200
        async with session.post(
            f"{mesh.upload_url}/api/v1/jobs", data=form(photo(40, 30))
        ) as response:
            assert response.status == 202, await response.text()
            job_id = (await response.json())["id"]
        assert (await wait_finished(session, mesh.upload_url, job_id))["status"] == "succeeded"


async def test_behind_a_trusted_tls_proxy_the_https_origin_is_this_one(
    mesh: Mesh, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    with upload_replica(mesh, tmp_path, UPLOAD_TRUSTED_PROXIES="127.0.0.1") as proxied:
        host = proxied.upload_url.removeprefix("http://")
        headers = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "203.0.113.9",
            "Origin": f"https://{host}",
        }
        url = f"{proxied.upload_url}/api/v1/jobs"
        async with http.post(url, data=form(photo(40, 30)), headers=headers) as accepted:
            assert accepted.status == 202, await accepted.text()
            job_id = (await accepted.json())["id"]
        other = {**headers, "Origin": "https://evil.example"}
        async with http.post(url, data=form(photo(40, 30)), headers=other) as refused:
            assert refused.status == 403
        await wait_finished(http, mesh.upload_url, job_id)


async def test_reading_is_never_refused_for_csrf(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    cross_site = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    async with http.get(f"{mesh.upload_url}/api/v1/operations", headers=cross_site) as response:
        assert response.status == 200
        # ...and nothing grants another origin the right to read the answer.
        assert "Access-Control-Allow-Origin" not in response.headers
