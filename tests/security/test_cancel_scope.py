"""Who may cancel a job, against a real mesh (an upload replica with API tokens): only its
owner. Another user gets 404 (as for every route of another's job: its existence is not
revealed), an auditor, who reads every job, 403: auditors read, they do not act. The
owner's cancellation is recorded with the owner's name."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.conftest import Mesh, complete_trail
from tests.e2e.helpers import photo, wait_finished
from tests.security.conftest import ALICE, BOB, CAROL
from tests.waiting import async_wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SLOW = json.dumps([{"op": "blur", "sigma": 100}] * 2 + [{"op": "convert", "format": "png"}])


async def test_only_the_owner_may_cancel(
    scoped: Mesh, principals: dict[str, aiohttp.ClientSession]
) -> None:
    url = scoped.upload_url
    form = aiohttp.FormData()
    form.add_field("pipeline", SLOW)
    form.add_field("file", photo(3000, 2000), filename="mine.jpg", content_type="image/jpeg")
    async with principals[ALICE].post(f"{url}/api/v1/jobs", data=form) as made:
        assert made.status == 202, await made.text()
        job_id = (await made.json())["id"]
    cancel = f"{url}/api/v1/jobs/{job_id}/cancel"

    async with principals[BOB].post(cancel) as answer:
        assert answer.status == 404
        assert (await answer.json())["error"]["code"] == "not_found"
    async with principals[CAROL].post(cancel) as answer:
        assert answer.status == 403
        assert (await answer.json())["error"]["code"] == "forbidden"
    async with principals[ALICE].post(cancel) as answer:
        assert answer.status == 202, await answer.text()
        assert (await answer.json())["status"] in {"queued", "processing"}

    job = await wait_finished(principals[ALICE], url, job_id, timeout=120)
    assert (job["status"], job["owner"], job["cancelled_by"]) == ("cancelled", ALICE, ALICE)
    docs = await async_wait_for(lambda: complete_trail(scoped.env, job_id), timeout=20)
    (requested,) = [d for d in docs if d["type"] == "job.cancel-requested"]
    assert requested["data"]["principal"] == ALICE
    delegation = next(iter(requested["prov"]["actedOnBehalfOf"].values()))
    assert delegation["prov:responsible"] == f"imagemesh:principal/{ALICE}"
