"""API tokens on (a second upload process with UPLOAD_API_TOKEN_HASHES): an API client
needs a valid bearer token; the pages (they send a browser to the sign-in), health and
documents stay open. Principals, ownership and the sign-in: test_principals.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Mesh
from tests.e2e.helpers import photo, submit, wait_finished
from tests.security.conftest import upload_replica
from upload.tokens import new_token, token_hash

pytestmark = pytest.mark.e2e

TOKEN = new_token()
OTHER_TOKEN = new_token()


@pytest.fixture(scope="module")
def guarded(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    hashes = f"{token_hash(OTHER_TOKEN)},alice:{token_hash(TOKEN)}"
    logs = tmp_path_factory.mktemp("upload-tokens")
    with upload_replica(mesh, logs, UPLOAD_API_TOKEN_HASHES=hashes) as replica:
        yield replica


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_without_a_token_the_api_answers_401_with_a_bearer_challenge(
    guarded: Mesh, http: aiohttp.ClientSession
) -> None:
    response = await submit(http, guarded.upload_url, photo(40, 30), "[]")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="imagemesh"'
    assert (await response.json())["error"]["code"] == "unauthorized"
    for path in ("/api/v1/jobs", "/api/v1/operations", "/api/v1/jobs/x/events"):
        async with http.get(f"{guarded.upload_url}{path}") as answer:
            assert answer.status == 401, path
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_wrong_token_is_401(guarded: Mesh, http: aiohttp.ClientSession) -> None:
    for authorization in (f"Bearer {TOKEN}x", f"Bearer {token_hash(TOKEN)}", f"Basic {TOKEN}"):
        async with http.get(
            f"{guarded.upload_url}/api/v1/operations", headers={"Authorization": authorization}
        ) as answer:
            assert answer.status == 401, authorization
            assert (await answer.json())["error"]["code"] == "unauthorized"
    async with http.get(f"{guarded.upload_url}/api/v1/jobs", headers=bearer("x" * 43)) as answer:
        assert answer.headers["WWW-Authenticate"].endswith('error="invalid_token"')


async def test_the_right_token_submits_follows_and_fetches(
    guarded: Mesh, http: aiohttp.ClientSession
) -> None:
    auth = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers=bearer(TOKEN),
    )
    async with auth:
        response = await submit(auth, guarded.upload_url, photo(80, 60), '[{"op":"grayscale"}]')
        assert response.status == 202, await response.text()
        job = await wait_finished(auth, guarded.upload_url, (await response.json())["id"])
        assert job["status"] == "succeeded"
        assert job["owner"] == "alice"  # the token's name is the job's owner
        async with auth.get(f"{guarded.upload_url}/api/v1/jobs/{job['id']}/result") as result:
            assert result.status == 200
    # Either configured token works.
    async with http.get(f"{guarded.upload_url}/api/v1/jobs", headers=bearer(OTHER_TOKEN)) as page:
        assert page.status == 200


async def test_pages_health_and_documents_stay_open(
    guarded: Mesh, http: aiohttp.ClientSession
) -> None:
    for path in (
        "/",
        "/history",
        "/jobs/00000000-0000-4000-8000-000000000000",
        "/api/docs",
        "/static/api.js",
        "/healthz",
        "/readyz",
        "/api/v1/openapi.json",
        "/api/v1/asyncapi.json",
        "/api/v1/about",
    ):
        async with http.get(f"{guarded.upload_url}{path}") as answer:
            assert answer.status == 200, path
    async with http.get(f"{guarded.upload_url}/api/v1/openapi.json") as answer:
        document = await answer.json()
    # The document says that this server requires the token.
    assert document["paths"]["/api/v1/jobs"]["post"]["security"] == [
        {"bearerAuth": []},
        {"sessionCookie": []},
    ]


async def test_the_session_mesh_without_tokens_needs_none(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{mesh.upload_url}/api/v1/jobs?limit=1") as answer:
        assert answer.status == 200
    async with http.get(f"{mesh.upload_url}/api/v1/openapi.json") as answer:
        document = await answer.json()
    assert document["paths"]["/api/v1/jobs"]["post"]["security"] == [
        {"bearerAuth": []},
        {"sessionCookie": []},
        {},
    ]


def test_the_cli_sends_its_token_from_the_environment(guarded: Mesh, tmp_path: Path) -> None:
    image = tmp_path / "small.png"
    image.write_bytes(photo(40, 30, "PNG"))
    command = [sys.executable, "-m", "imagemesh_cli", "submit", str(image), "--wait"]
    env = {**os.environ, "IMAGEMESH_URL": guarded.upload_url}
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "token" in refused.stderr.lower() or "401" in refused.stderr
    done = subprocess.run(
        [*command, "--output", str(tmp_path)],
        env={**env, "IMAGEMESH_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.glob("small-*.png"))
