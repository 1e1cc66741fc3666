"""Rate limits against a second upload process with low ones: past the burst, 429
`rate_limited` with Retry-After; per client, through a trusted proxy's X-Forwarded-For."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from tests.conftest import Mesh
from tests.e2e.helpers import photo, submit, wait_finished
from tests.security.conftest import upload_replica

pytestmark = pytest.mark.e2e

BURST = 3
API_BURST = 10


@pytest.fixture(scope="module")
def limited(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with upload_replica(
        mesh,
        tmp_path_factory.mktemp("upload-limited"),
        UPLOAD_RATE_LIMIT_PER_MINUTE="2",  # one every 30 s: nothing refills during the test
        UPLOAD_RATE_LIMIT_BURST=str(BURST),
        UPLOAD_API_RATE_LIMIT_PER_MINUTE="2",
        UPLOAD_API_RATE_LIMIT_BURST=str(API_BURST),
        UPLOAD_TRUSTED_PROXIES="127.0.0.1",
    ) as replica:
        yield replica


def client(address: str) -> dict[str, str]:
    """As our trusted proxy says it heard from `address` (and what the client wrote itself,
    left of that, is ignored)."""
    return {"X-Forwarded-For": f"198.51.100.250, {address}"}


async def test_past_the_burst_new_jobs_are_429_with_retry_after(
    limited: Mesh, http: aiohttp.ClientSession
) -> None:
    ids = []
    for _ in range(BURST):
        response = await submit(http, limited.upload_url, photo(32, 24), "[]")
        assert response.status == 202, await response.text()
        ids.append((await response.json())["id"])
    refused = await submit(http, limited.upload_url, photo(32, 24), "[]")
    assert refused.status == 429
    assert (await refused.json())["error"]["code"] == "rate_limited"
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 30
    # Only new jobs are spent: following them is another, more generous bucket.
    for job_id in ids:
        async with http.get(f"{limited.upload_url}/api/v1/jobs/{job_id}") as answer:
            assert answer.status == 200
    # The jobs accepted are processed as usual.
    for job_id in ids:
        assert (await wait_finished(http, limited.upload_url, job_id))["status"] == "succeeded"


async def test_each_client_behind_the_proxy_has_its_own_bucket(
    limited: Mesh, http: aiohttp.ClientSession
) -> None:
    url = f"{limited.upload_url}/api/v1/jobs"
    statuses = []
    for _ in range(BURST + 1):
        async with http.post(url, data=b"not a form", headers=client("203.0.113.1")) as answer:
            statuses.append(answer.status)  # refused forms spend the bucket too
    assert statuses == [400] * BURST + [429]
    async with http.post(url, data=b"not a form", headers=client("203.0.113.2")) as answer:
        assert answer.status == 400  # another client: its own burst


async def test_other_api_requests_have_their_own_bucket_and_pages_none(
    limited: Mesh, http: aiohttp.ClientSession
) -> None:
    headers = client("203.0.113.3")
    statuses = []
    for _ in range(API_BURST + 1):
        async with http.get(f"{limited.upload_url}/api/v1/operations", headers=headers) as answer:
            statuses.append(answer.status)
            last = answer
            body = await answer.json()
    assert statuses == [200] * API_BURST + [429]
    assert body["error"]["code"] == "rate_limited"
    assert int(last.headers["Retry-After"]) >= 1
    for path in ("/", "/healthz", "/static/style.css", "/api/docs"):
        for _ in range(3):
            async with http.get(f"{limited.upload_url}{path}", headers=headers) as answer:
                assert answer.status == 200, path
