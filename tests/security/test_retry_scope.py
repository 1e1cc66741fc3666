"""Who may retry a job, against a real mesh (an upload replica with API tokens): only its
owner. Another user gets 404 (as for every route of another's job: its existence is not
revealed), an auditor, who reads every job, 403: auditors read, they do not act. The
owner's retry is a job of the owner's, recorded with the owner's name; neither refusal
made a job."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.conftest import Mesh, complete_trail
from tests.e2e.helpers import photo, wait_finished
from tests.security.conftest import ALICE, BOB, CAROL
from tests.waiting import async_wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

FAILING = json.dumps([{"op": "thumbnail", "width": 10000, "height": 10000, "upscale": True}])


async def test_only_the_owner_may_retry(
    scoped: Mesh, principals: dict[str, aiohttp.ClientSession]
) -> None:
    url = scoped.upload_url
    form = aiohttp.FormData()
    form.add_field("pipeline", FAILING)
    form.add_field("file", photo(200, 150, "PNG"), filename="mine.png", content_type="image/png")
    async with principals[ALICE].post(f"{url}/api/v1/jobs", data=form) as made:
        assert made.status == 202, await made.text()
        job_id = (await made.json())["id"]
    failed = await wait_finished(principals[ALICE], url, job_id)
    assert failed["status"] == "failed", failed
    retry = f"{url}/api/v1/jobs/{job_id}/retry"
    fixed = {"pipeline": [{"op": "thumbnail", "width": 32}]}

    async with principals[BOB].post(retry, json=fixed) as answer:
        assert answer.status == 404
        assert (await answer.json())["error"]["code"] == "not_found"
    async with principals[CAROL].post(retry, json=fixed) as answer:
        assert answer.status == 403
        assert (await answer.json())["error"]["code"] == "forbidden"
    async with principals[ALICE].get(f"{url}/api/v1/jobs/{job_id}") as seen:
        assert "retried_by" not in await seen.json()  # neither refusal made a job
    async with principals[ALICE].post(retry, json=fixed) as answer:
        assert answer.status == 202, await answer.text()
        new_id = (await answer.json())["id"]

    new = await wait_finished(principals[ALICE], url, new_id)
    assert (new["status"], new["owner"], new["retry_of"]) == ("succeeded", ALICE, job_id)
    async with principals[BOB].get(f"{url}/api/v1/jobs/{new_id}") as hidden:
        assert hidden.status == 404  # the retry is Alice's job, as the retried one
    async with principals[CAROL].get(f"{url}/api/v1/jobs/{job_id}") as audited:
        assert (await audited.json())["retried_by"] == [new_id]
    docs = await async_wait_for(lambda: _retried(scoped, job_id), timeout=20)
    (retried,) = [d for d in docs if d["type"] == "job.retried"]
    assert (retried["data"]["principal"], retried["data"]["retry"]) == (ALICE, new_id)
    delegation = next(iter(retried["prov"]["actedOnBehalfOf"].values()))
    assert delegation["prov:responsible"] == f"imagemesh:principal/{ALICE}"


def _retried(mesh: Mesh, job_id: str) -> list[dict[str, object]] | None:
    docs = complete_trail(mesh.env, job_id)
    return docs if docs and any(d["type"] == "job.retried" for d in docs) else None
