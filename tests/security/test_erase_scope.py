"""Who may erase a job, against a real mesh (an upload replica with API tokens): only its
owner. Another user gets 404 (as for every route of another's job: its existence is not
revealed), an auditor, who reads every job, 403: auditors read, they do not act; another
site's page in the owner's browser, 403 (CSRF). And an erasure never breaks another
principal's job: an input stored once for the same bytes stays while the other
principal's job uses it, which still serves it; the other principal learns nothing of
the erasure."""

from __future__ import annotations

import json

import aiohttp
import pytest

from objectstore import ObjectNotFound, S3Settings, open_store
from tests.conftest import Mesh, settings_from, trail
from tests.e2e.helpers import photo, wait_finished
from tests.security.conftest import ALICE, BOB, CAROL
from tests.waiting import async_wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def _job(session: aiohttp.ClientSession, url: str, data: bytes, pipeline: str) -> str:
    form = aiohttp.FormData()
    form.add_field("pipeline", pipeline)
    form.add_field("file", data, filename="mine.jpg", content_type="image/jpeg")
    async with session.post(f"{url}/api/v1/jobs", data=form) as made:
        assert made.status == 202, await made.text()
        job_id = str((await made.json())["id"])
    assert (await wait_finished(session, url, job_id))["status"] == "succeeded"
    return job_id


async def test_only_the_owner_may_erase_and_another_principals_job_keeps_its_input(
    scoped: Mesh, principals: dict[str, aiohttp.ClientSession]
) -> None:
    url, data = scoped.upload_url, photo(300, 200)
    mine = await _job(principals[ALICE], url, data, json.dumps([{"op": "grayscale"}]))
    theirs = await _job(principals[BOB], url, data, json.dumps([{"op": "thumbnail", "width": 50}]))
    erase = f"{url}/api/v1/jobs/{mine}"

    async with principals[BOB].delete(erase) as answer:
        assert answer.status == 404
        assert (await answer.json())["error"]["code"] == "not_found"
    async with principals[CAROL].delete(erase) as answer:
        assert answer.status == 403
        assert (await answer.json())["error"]["code"] == "forbidden"
    cross_site = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    async with principals[ALICE].delete(erase, headers=cross_site) as answer:
        assert answer.status == 403  # another site's page in Alice's browser (CSRF)
        assert (await answer.json())["error"]["code"] == "csrf_failed"
    async with principals[ALICE].get(f"{erase}/result") as untouched:
        assert untouched.status == 200  # no refusal erased anything
    async with principals[ALICE].delete(erase) as answer:
        assert answer.status == 204, await answer.text()

    async with principals[ALICE].get(erase) as status:
        job = await status.json()
    assert (job["erased_by"], job["owner"]) == (ALICE, ALICE)
    async with principals[CAROL].get(f"{erase}/input") as audited:
        assert audited.status == 410  # the auditor reads the record, not the pixels
    # Bob's job of the same bytes is untouched: its input is still served.
    async with principals[BOB].get(f"{url}/api/v1/jobs/{theirs}/input") as answer:
        assert (answer.status, await answer.read()) == (200, data)
    async with principals[BOB].get(f"{url}/api/v1/jobs/{theirs}") as answer:
        assert "erased_at" not in await answer.json()

    settings = settings_from(scoped.env, S3Settings)
    async with open_store(settings) as store:
        outputs = [o async for o in store.objects(settings.s3_output_bucket, f"{mine}/")]
    assert outputs == []  # Alice's output is gone
    docs = await async_wait_for(
        lambda: [d for d in trail(scoped.env, mine)[2] if d["type"] == "job.erased"] or None,
        timeout=20,
    )
    (erased,) = docs
    assert erased["data"]["principal"] == ALICE
    (kept,) = [o for o in erased["data"]["objects"] if not o["deleted"]]
    assert (kept["role"], kept["kept_because"]) == ("input", "used by 1 other job")
    delegation = next(iter(erased["prov"]["actedOnBehalfOf"].values()))
    assert delegation["prov:responsible"] == f"imagemesh:principal/{ALICE}"

    async with principals[BOB].delete(f"{url}/api/v1/jobs/{theirs}") as answer:
        assert answer.status == 204  # the input's last user: now it goes
    async with open_store(settings) as store:
        with pytest.raises(ObjectNotFound):
            await store.metadata(settings.s3_input_bucket, kept["key"])
