"""CSRF against the running upload service: a cross-site form post is refused, the web
app's own post (cookie + header, same origin) and an API client's (curl) are accepted."""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Mesh
from tests.e2e.helpers import photo, wait_finished
from tests.security.conftest import upload_replica

pytestmark = pytest.mark.e2e

COOKIE = "imagemesh_csrf"
PAGES = ("/", "/history", "/jobs/00000000-0000-4000-8000-000000000000", "/api/docs")


def form(data: bytes, filename: str = "photo.jpg") -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("pipeline", json.dumps([{"op": "grayscale"}]))
    body.add_field("file", data, filename=filename, content_type="image/jpeg")
    return body


async def csrf_cookie(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> SimpleCookie:
    async with http.get(url, headers=headers) as page:
        assert page.status == 200
        cookie = SimpleCookie()
        for header in page.headers.getall("Set-Cookie", ()):
            cookie.load(header)
    assert COOKIE in cookie, f"{url} set no {COOKIE} cookie"
    return cookie


async def test_every_page_sets_a_random_strict_cookie_scripts_can_read(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    values = set()
    for path in PAGES:
        morsel = (await csrf_cookie(http, f"{mesh.upload_url}{path}"))[COOKIE]
        assert len(morsel.value) >= 43
        assert morsel["samesite"] == "Strict"
        assert morsel["path"] == "/"
        assert not morsel["httponly"], "the page's script sends it back: it must read it"
        assert not morsel["secure"], "plain http: a Secure cookie would never come back"
        values.add(morsel.value)
    assert len(values) == len(PAGES), "each new browser gets its own token"
    # A browser that has one keeps it.
    token = values.pop()
    async with http.get(f"{mesh.upload_url}/", headers={"Cookie": f"{COOKIE}={token}"}) as page:
        assert "Set-Cookie" not in page.headers
    # A spoofed X-Forwarded-Proto from a peer that is not a trusted proxy changes nothing.
    forwarded = {"X-Forwarded-Proto": "https"}
    assert not (await csrf_cookie(http, f"{mesh.upload_url}/", forwarded))[COOKIE]["secure"]


async def test_behind_a_trusted_tls_proxy_the_cookie_is_secure(
    mesh: Mesh, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    with upload_replica(mesh, tmp_path, UPLOAD_TRUSTED_PROXIES="127.0.0.1") as proxied:
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
        cookie = await csrf_cookie(http, f"{proxied.upload_url}/", headers)
        assert cookie[COOKIE]["secure"]
        # The origin the browser saw is https: that is the same origin.
        host = proxied.upload_url.removeprefix("http://")
        token = cookie[COOKIE].value
        browser = {
            **headers,
            "Origin": f"https://{host}",
            "Cookie": f"{COOKIE}={token}",
            "X-CSRF-Token": token,
        }
        url = f"{proxied.upload_url}/api/v1/jobs"
        async with http.post(url, data=form(photo(40, 30)), headers=browser) as accepted:
            assert accepted.status == 202, await accepted.text()
            job_id = (await accepted.json())["id"]
        plain = {**browser, "Origin": f"http://{host}"}
        async with http.post(url, data=form(photo(40, 30)), headers=plain) as refused:
            assert refused.status == 403
        await wait_finished(http, mesh.upload_url, job_id)


async def test_a_cross_site_form_post_is_refused(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    """What another site's <form method=post enctype=multipart/form-data> makes the
    browser send: its own Origin, Sec-Fetch-Site: cross-site, and (were it not Strict)
    the cookie, but never our header."""
    token = (await csrf_cookie(http, f"{mesh.upload_url}/"))[COOKIE].value
    forged = {
        "Origin": "http://evil.example",
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "navigate",
        "Cookie": f"{COOKIE}={token}",
    }
    variants = [
        forged,
        {"Origin": "http://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a data: page
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Cookie": f"{COOKIE}={token}"},  # the cookie alone is not enough
        # Even with a token (say, read from a leaked page): never from another origin.
        {"Origin": "http://evil.example", "Cookie": f"{COOKIE}={token}", "X-CSRF-Token": token},
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


async def test_the_web_apps_own_post_and_an_api_clients_are_accepted(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    token = (await csrf_cookie(http, f"{mesh.upload_url}/"))[COOKIE].value
    same_origin = {
        "Origin": mesh.upload_url,
        "Sec-Fetch-Site": "same-origin",
        "Cookie": f"{COOKIE}={token}; other=1",
        "X-CSRF-Token": token,
    }
    ids = []
    async with http.post(
        f"{mesh.upload_url}/api/v1/jobs", data=form(photo(48, 32)), headers=same_origin
    ) as response:
        assert response.status == 202, await response.text()
        ids.append((await response.json())["id"])
    wrong = {**same_origin, "X-CSRF-Token": token[::-1]}
    async with http.post(
        f"{mesh.upload_url}/api/v1/jobs", data=form(photo(48, 32)), headers=wrong
    ) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "csrf_failed"
    # curl, the CLI, scripts: no Origin, no Sec-Fetch-Site, no Cookie.
    async with http.post(f"{mesh.upload_url}/api/v1/jobs", data=form(photo(48, 32))) as response:
        assert response.status == 202, await response.text()
        ids.append((await response.json())["id"])
    for job_id in ids:
        assert (await wait_finished(http, mesh.upload_url, job_id))["status"] == "succeeded"


async def test_reading_is_never_refused_for_csrf(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    cross_site = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    async with http.get(f"{mesh.upload_url}/api/v1/operations", headers=cross_site) as response:
        assert response.status == 200
        # ...and nothing grants another origin the right to read the answer.
        assert "Access-Control-Allow-Origin" not in response.headers
