"""The upload page's flow in Chromium, against the four services as real processes: the
live steps of each job, the results brought into view with the overall progress, and the
checks each file gets before it is sent (tests/browser.py, tests/e2e/test_browser.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import JOB_DEADLINE_MS, PHONE, PageProblems, card, page_on, photo_like, upload
from tests.conftest import Mesh

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

DITHERED_THUMBNAIL: list[dict[str, Any]] = [
    {"op": "thumbnail", "width": 200},
    {"op": "dither"},
]  # floyd-steinberg


@pytest.fixture
async def page(browser: Browser, mesh: Mesh) -> AsyncIterator[Page]:
    async with page_on(browser, mesh.upload_url) as opened:
        yield opened


@pytest.fixture
async def phone(browser: Browser, mesh: Mesh) -> AsyncIterator[Page]:
    async with page_on(browser, mesh.upload_url, PHONE) as opened:
        yield opened


async def open_upload_page(page: Page) -> PageProblems:
    problems = PageProblems(page)
    response = await page.goto("/")
    assert response is not None
    assert response.ok
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return problems


async def use_pipeline(page: Page, pipeline: list[dict[str, Any]]) -> None:
    """Steps added in the builder, one by one, with their parameters."""
    for step in pipeline:
        await page.get_by_label("Operation to add").select_option(step["op"])
        await page.get_by_role("button", name="Add", exact=True).click()
        added = page.locator(f'#ops > li.op[data-op="{step["op"]}"]').last
        for name, value in step.items():
            if name == "op":
                continue
            field = added.locator(f"[data-param={name}]").locator("input, select")
            if await field.evaluate("(element) => element.tagName") == "SELECT":
                await field.select_option(value=str(value))
            else:
                await field.fill(str(value))


def photos(count: int) -> list[Any]:
    return [
        upload(f"photo-{n}.jpg", "image/jpeg", photo_like(640 + 8 * n, 480, "JPEG"))
        for n in range(count)
    ]


async def test_the_live_steps_are_every_step_of_the_job_as_the_job_page_lists_them(
    page: Page, mesh: Mesh
) -> None:
    # Three photos at once: the fast jobs end before (or while) their stream opens.
    problems = await open_upload_page(page)
    await page.get_by_label("Choose images").set_input_files(photos(3))
    await use_pipeline(page, DITHERED_THUMBNAIL)
    await page.get_by_role("button", name="Upload and process 3 images").click()
    for n in range(3):
        job = card(page, f"photo-{n}.jpg")
        await expect(job).to_have_attribute("data-status", "succeeded", timeout=JOB_DEADLINE_MS)
        job_id = await job.get_attribute("data-job-id")
        answer = await page.request.get(f"/api/v1/jobs/{job_id}/provenance")
        activities = (await answer.json())["activity"]
        # Every step of the job: each event, and each operation image.processed lists
        # (upload.received, image.uploaded, processing-started, 2 operations, processed).
        assert len(activities) == 6, activities
        summary = job.locator(".steps-box summary")
        await expect(summary).to_have_text(f"Steps ({len(activities)})")
        live = await job.locator(".steps-log > li").evaluate_all(
            "(items) => items.map((item) => item.dataset.type)"
        )
        assert sorted(live) == sorted(a["prov:type"] for a in activities.values()), live
        assert live[:3] == ["upload.received", "image.uploaded", "job.processing-started"]
        assert live[-1] == "image.processed"
    # The same list, in the same order, as the job page's timeline.
    job_id = await card(page, "photo-0.jpg").get_attribute("data-job-id")
    live = (
        await card(page, "photo-0.jpg")
        .locator(".steps-log > li")
        .evaluate_all(
            "(items) => items.map((li) => [li.dataset.type, li.querySelector('.who').textContent])"
        )
    )
    await page.goto(f"/jobs/{job_id}")
    timeline = page.locator("#timeline ol.timeline > li")
    await expect(timeline).to_have_count(6)
    recorded = await timeline.evaluate_all(
        "(items) => items.map((item) => [item.dataset.type, item.dataset.service])"
    )
    assert recorded == live
    assert problems.unexpected() == []


async def test_after_upload_the_jobs_are_in_view_with_the_overall_progress(
    phone: Page, mesh: Mesh
) -> None:
    problems = await open_upload_page(phone)
    await phone.get_by_label("Choose images").set_input_files(photos(3))
    await use_pipeline(phone, [{"op": "thumbnail", "width": 100}])
    await phone.get_by_role("button", name="Upload and process 3 images").click()
    # The focus moves to the jobs (the button stays far above them on a phone), in view.
    jobs_title = phone.locator("#jobs-title")
    await expect(jobs_title).to_be_focused()
    await expect(jobs_title).to_be_in_viewport()
    # The overall progress, said politely to screen readers as it changes.
    overall = phone.locator("#jobs-progress")
    await expect(overall).to_have_attribute("aria-live", "polite")
    await expect(overall).to_have_text(re.compile(r"^[0-3] of 3 done"))
    await expect(overall).to_have_text("3 of 3 done", timeout=JOB_DEADLINE_MS)
    for n in range(3):
        await expect(card(phone, f"photo-{n}.jpg")).to_have_attribute("data-status", "succeeded")
    assert problems.unexpected() == []
