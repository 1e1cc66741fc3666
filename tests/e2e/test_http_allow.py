"""HTTP details of the real upload service: a 405 names the methods the resource allows
(`Allow`, RFC 9110 section 15.5.6), on API routes, pages and ops routes alike."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import Mesh

pytestmark = pytest.mark.e2e

CASES = [
    ("TRACE", "/api/v1/operations", {"GET", "HEAD"}),
    ("DELETE", "/api/v1/jobs", {"GET", "HEAD", "POST"}),
    ("PUT", "/api/v1/jobs/00000000-0000-4000-8000-000000000000", {"GET", "HEAD"}),
    ("PATCH", "/api/v1/openapi.json", {"GET", "HEAD"}),
    ("DELETE", "/api/docs", {"GET", "HEAD"}),
    ("TRACE", "/", {"GET", "HEAD"}),
]


@pytest.mark.parametrize(("method", "path", "allowed"), CASES)
async def test_405_carries_allow(
    mesh: Mesh, http: aiohttp.ClientSession, method: str, path: str, allowed: set[str]
) -> None:
    async with http.request(method, f"{mesh.upload_url}{path}") as response:
        assert response.status == 405, await response.text()
        assert "Allow" in response.headers, dict(response.headers)
        named = {name.strip() for name in response.headers["Allow"].split(",")}
        assert allowed <= named, named
        assert method not in named
        if path.startswith("/api/"):
            body = await response.json()
            assert body["error"]["code"] == "method_not_allowed"
