"""Short job ids (the 8 characters the web app and CLI show) against a real mesh: an upload
replica with two principals. `GET /api/v1/jobs?id_prefix=` finds a principal's own jobs by
a prefix, and never another's: not as a match, not as a second candidate."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.conftest import Mesh
from tests.e2e.helpers import photo
from tests.security.conftest import upload_replica
from tests.waiting import async_wait_for
from upload.tokens import new_token, token_hash

pytestmark = pytest.mark.e2e

_RUN = uuid.uuid4().hex[:8]
DORA, ERIK = f"dora-{_RUN}", f"erik-{_RUN}"
DORA_TOKEN, ERIK_TOKEN = new_token(), new_token()


@dataclass
class Two:
    url: str


@pytest.fixture(scope="module")
def two(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Two]:
    entries = [f"{DORA}:{token_hash(DORA_TOKEN)}", f"{ERIK}:{token_hash(ERIK_TOKEN)}"]
    with upload_replica(
        mesh,
        tmp_path_factory.mktemp("upload-id-prefix"),
        UPLOAD_API_TOKEN_HASHES=",".join(entries),
    ) as replica:
        yield Two(replica.upload_url)


@pytest.fixture
async def dora() -> AsyncIterator[aiohttp.ClientSession]:
    async with _client(DORA_TOKEN) as session:
        yield session


@pytest.fixture
async def erik() -> AsyncIterator[aiohttp.ClientSession]:
    async with _client(ERIK_TOKEN) as session:
        yield session


def _client(token: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=60),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def _submit(session: aiohttp.ClientSession, url: str) -> str:
    form = aiohttp.FormData()
    form.add_field("file", photo(40, 30), filename="p.jpg", content_type="image/jpeg")
    form.add_field("pipeline", "[]")
    async with session.post(f"{url}/api/v1/jobs", data=form) as response:
        assert response.status == 202, await response.text()
        return str((await response.json())["id"])


async def _by_prefix(session: aiohttp.ClientSession, url: str, prefix: str) -> list[str]:
    async with session.get(f"{url}/api/v1/jobs", params={"id_prefix": prefix}) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        assert body["next"] is None
        return [job["id"] for job in body["jobs"]]


async def _recorded(session: aiohttp.ClientSession, url: str, job_id: str) -> None:
    """Wait (deadline) until the job is in its owner's history, where prefixes are looked up."""

    async def listed() -> bool:
        return job_id in await _by_prefix(session, url, job_id)

    await async_wait_for(listed, timeout=30)


async def test_a_short_id_finds_the_owners_job_only(
    two: Two, dora: aiohttp.ClientSession, erik: aiohttp.ClientSession
) -> None:
    mine = await _submit(dora, two.url)
    theirs = await _submit(erik, two.url)
    await _recorded(dora, two.url, mine)
    await _recorded(erik, two.url, theirs)
    assert await _by_prefix(dora, two.url, mine[:8]) == [mine]
    assert await _by_prefix(dora, two.url, mine[:8].upper()) == [mine]
    # Another's job: no match, whatever its prefix.
    assert await _by_prefix(dora, two.url, theirs[:8]) == []
    assert await _by_prefix(erik, two.url, theirs[:6]) == [theirs]


async def test_a_bad_prefix_is_400(two: Two, dora: aiohttp.ClientSession) -> None:
    for prefix in ("d58e1", "xyz12345", "d58e10d6" * 6):
        async with dora.get(f"{two.url}/api/v1/jobs", params={"id_prefix": prefix}) as response:
            assert response.status == 400, prefix
            assert (await response.json())["error"]["code"] == "bad_request"


async def test_the_job_page_sends_a_short_id_on_to_the_owners_job_only(
    two: Two, dora: aiohttp.ClientSession, erik: aiohttp.ClientSession
) -> None:
    """`/jobs/d58e10d6` (a link someone typed from the 8 characters shown): the owner's
    job page; another principal's short id is no job at all (404), as its API is."""
    mine = await _submit(dora, two.url)
    theirs = await _submit(erik, two.url)
    await _recorded(dora, two.url, mine)
    await _recorded(erik, two.url, theirs)
    for short in (mine[:8], mine[:6].upper()):
        async with dora.get(f"{two.url}/jobs/{short}", allow_redirects=False) as page:
            assert page.status == 302, short
            assert page.headers["Location"] == f"/jobs/{mine}"
            assert page.headers["Cache-Control"] == "private, no-store"
    async with dora.get(f"{two.url}/jobs/{theirs[:8]}", allow_redirects=False) as page:
        assert page.status == 404
        assert page.content_type == "text/html"
    async with erik.get(f"{two.url}/jobs/{theirs[:8]}", allow_redirects=False) as page:
        assert (page.status, page.headers["Location"]) == (302, f"/jobs/{theirs}")
    async with dora.get(f"{two.url}/jobs/{mine[:8]}") as page:  # followed: the page itself
        assert (page.status, str(page.url)) == (200, f"{two.url}/jobs/{mine}")
