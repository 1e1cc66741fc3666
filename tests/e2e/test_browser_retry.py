"""The Retry buttons of the job page and of a job card, in a real headless Chromium
(tests/browser.py) against the four services as real processes: shown for a job that
failed or was cancelled, each asks for confirmation (a dismissed dialog makes no job),
then a new job runs on the same image and pipeline. The job page goes to the new job's
page, which says what it retries ("Retry of"); the retried job's page names it back
("Retried as"). A card follows the new job in place."""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.browser import JOB_DEADLINE_MS, answer_next_dialog, card, upload
from tests.conftest import Mesh
from tests.e2e.helpers import job_status, photo, submit, wait_finished
from tests.e2e.test_retry import FAILING

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(180)]

NAME = f"again-{uuid.uuid4().hex[:8]}.png"


async def test_the_job_page_retries_a_failed_job_once_confirmed(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    response = await submit(http, mesh.upload_url, photo(200, 150, "PNG"), FAILING, filename=NAME)
    assert response.status == 202, await response.text()
    old_id = (await response.json())["id"]
    assert (await wait_finished(http, mesh.upload_url, old_id))["status"] == "failed"
    await page.goto(f"/jobs/{old_id}")
    button = page.locator("#job-retry")
    await expect(button).to_be_visible()
    await expect(page.locator("#job-cancel")).to_be_hidden()

    asked = answer_next_dialog(page, accept=False)
    await button.click()
    assert asked == ["Retry this job? A new job runs on the same image with the same pipeline."]
    assert "retried_by" not in await job_status(http, mesh.upload_url, old_id)  # nothing was sent

    answer_next_dialog(page, accept=True)
    await button.click()
    await page.wait_for_url(lambda url: "/jobs/" in url and old_id not in url)
    new_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    assert (await job_status(http, mesh.upload_url, old_id))["retried_by"] == [new_id]
    retry_of = page.locator("#job-facts div", has=page.get_by_text("Retry of", exact=True))
    await expect(retry_of.get_by_role("link")).to_have_text(old_id[:8])
    await expect(retry_of.get_by_role("link")).to_have_attribute("href", f"/jobs/{old_id}")
    # The same pipeline fails again: the new job may be retried in turn.
    await expect(page.locator("#job-badge .badge")).to_have_text("Failed", timeout=JOB_DEADLINE_MS)
    await expect(button).to_be_visible()

    await retry_of.get_by_role("link").click()
    await page.wait_for_url(f"**/jobs/{old_id}")
    retried_as = page.locator("#job-facts div", has=page.get_by_text("Retried as", exact=True))
    await expect(retried_as.get_by_role("link")).to_have_text(new_id[:8])
    await expect(page.locator("#timeline li[data-type='job.retried']")).to_contain_text(
        "Retried as a new job", timeout=JOB_DEADLINE_MS
    )

    # The history names the links too, each row the other job.
    await page.goto(f"/history?search={NAME}")
    old_row, new_row = (page.locator(f"tr[data-job-id='{job}']") for job in (old_id, new_id))
    await expect(old_row.locator(".retries")).to_have_text(f"retried as {new_id[:8]}")
    await expect(new_row.locator(".retries")).to_have_text(f"retry of {old_id[:8]}")
    await new_row.locator(".retries").get_by_role("link").click()
    await page.wait_for_url(f"**/jobs/{old_id}")


async def test_a_job_card_retries_its_failed_job_in_place(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    response = await page.goto("/")
    assert response is not None
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    jpeg = photo(640, 480)
    await page.get_by_label("Choose images").set_input_files(
        [upload("cut.jpg", "image/jpeg", jpeg[: len(jpeg) // 2])]  # undecodable: fails
    )
    await page.get_by_role("button", name="Upload and process 1 image").click()
    job = card(page, "cut.jpg")
    await expect(job).to_have_attribute("data-status", "failed", timeout=JOB_DEADLINE_MS)
    old_id = await job.get_attribute("data-job-id")
    assert old_id
    asked = answer_next_dialog(page, accept=True)
    await job.get_by_role("button", name="Retry", exact=True).click()
    await expect(job).not_to_have_attribute("data-job-id", old_id, timeout=JOB_DEADLINE_MS)
    assert asked == ["Retry cut.jpg? A new job runs on the same image with the same pipeline."]
    new_id = await job.get_attribute("data-job-id")
    assert new_id
    await expect(job).to_have_attribute("data-status", "failed", timeout=JOB_DEADLINE_MS)
    await expect(job.get_by_role("link", name="Details and provenance")).to_have_attribute(
        "href", f"/jobs/{new_id}"
    )
    assert (await job_status(http, mesh.upload_url, old_id))["retried_by"] == [new_id]
    assert (await job_status(http, mesh.upload_url, new_id))["retry_of"] == old_id
