"""A reused job's page in a real headless Chromium (tests/browser.py): its timeline shows
the computation it took (the earlier job's `image.processed`, which has no time or agent
in this job's document) at the reuse, by the runner that reused it: the same steps, in
the same order and by the same services, as the job's progress stream sends."""

from __future__ import annotations

import json

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.browser import PageProblems
from tests.conftest import Mesh
from tests.e2e.helpers import photo, submit, wait_finished
from tests.e2e.test_progress import read_events

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

PIPELINE = json.dumps([{"op": "thumbnail", "width": 40}])


async def test_a_reused_jobs_timeline_shows_the_taken_computation_at_the_reuse(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    base, data = mesh.upload_url, photo(80, 60)
    jobs = []
    for _ in range(2):
        response = await submit(http, base, data, PIPELINE)
        assert response.status == 202, await response.text()
        jobs.append(await wait_finished(http, base, (await response.json())["id"]))
    assert jobs[1]["reused_from"] == jobs[0]["id"], jobs[1]
    async with http.get(f"{base}/api/v1/jobs/{jobs[1]['id']}/events") as stream:
        streamed = [
            [data["type"], data["service"]]
            for name, data in await read_events(stream, timeout=20)
            if name == "step"
        ]
    problems = PageProblems(page)
    await page.goto(f"/jobs/{jobs[1]['id']}")
    timeline = page.locator("#timeline ol.timeline > li")
    await expect(timeline).to_have_count(len(streamed))
    shown = await timeline.evaluate_all(
        "(items) => items.map((item) => [item.dataset.type, item.dataset.service])"
    )
    assert shown == streamed, (shown, streamed)
    taken = page.locator("#timeline li[data-type='image.processed']")
    await expect(taken).to_have_attribute("data-service", "imageproc_runner")
    await expect(taken.locator(".tl-agent")).to_contain_text("imageproc_runner")
    earlier = f"Computed earlier, by job {jobs[0]['id'][:8]}"  # not this job's own work
    await expect(taken.locator(".tl-title")).to_have_text(earlier)
    reused_when = await page.locator("#timeline li[data-type='image.reused'] .tl-when").inner_text()
    await expect(taken.locator(".tl-when")).to_have_text(reused_when)
    assert reused_when
    assert problems.unexpected() == []
