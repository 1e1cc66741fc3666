"""The Delete buttons of the job page and of a job card, in a real headless Chromium
(tests/browser.py) against the four services as real processes: shown once the job has
finished, each asks for confirmation (a dismissed dialog deletes nothing), then the job's
images are gone and the page says so in words instead of showing broken images, on the
job page, on the card and in the history."""

from __future__ import annotations

import json

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.browser import JOB_DEADLINE_MS, answer_next_dialog, card, images_loaded, upload
from tests.conftest import Mesh
from tests.e2e.helpers import photo, submit, wait_finished
from tests.e2e.test_browser_uploads import use_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(180)]
QUICK = [{"op": "thumbnail", "width": 64}]


async def _status(http: aiohttp.ClientSession, mesh: Mesh, job_id: str) -> dict[str, object]:
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job_id}") as response:
        job: dict[str, object] = await response.json()
        return job


async def test_the_job_page_deletes_a_finished_jobs_images_once_confirmed(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    response = await submit(
        http, mesh.upload_url, photo(320, 240), json.dumps(QUICK), filename="secret.jpg"
    )
    job_id = (await response.json())["id"]
    await wait_finished(http, mesh.upload_url, job_id)
    await page.goto(f"/jobs/{job_id}")
    result = page.locator("#job-result")
    await expect(result.locator("img")).to_have_count(2, timeout=JOB_DEADLINE_MS)
    await images_loaded(result)
    button = page.locator("#job-erase")
    await expect(button).to_be_visible()
    await expect(button).to_have_text("Delete job")

    asked = answer_next_dialog(page, accept=False)
    await button.click()
    assert asked == [
        "Delete this job's images for good? The uploaded image, the result and its thumbnail "
        "are deleted (an image another job still uses stays for it). The job's record and "
        "provenance stay."
    ]
    assert "erased_at" not in await _status(http, mesh, job_id)  # nothing was sent

    answer_next_dialog(page, accept=True)
    await button.click()
    await expect(page.locator("#job-live")).to_contain_text("Deleted by local")
    await expect(result.locator(".erased-note")).to_contain_text("its images are gone for good")
    await expect(result.locator("img")).to_have_count(0)
    await expect(button).to_be_hidden()
    await expect(page.locator("#job-badge .badge")).to_have_text("Done")  # the record stays
    assert (await _status(http, mesh, job_id))["erased_by"] == "local"
    await expect(page.locator("#timeline li[data-type='job.erased']")).to_contain_text(
        "Images deleted", timeout=JOB_DEADLINE_MS
    )

    await page.reload()  # as anyone opening the page later sees it: no broken image
    await expect(page.locator("#job-live")).to_contain_text("Deleted by local")
    await expect(result.locator("img")).to_have_count(0)
    await page.goto(f"/history?search={job_id[:8]}")
    row = page.locator(f"tr[data-job-id='{job_id}']")
    await expect(row).to_be_visible(timeout=JOB_DEADLINE_MS)
    await expect(row.locator("img")).to_have_count(0)
    await expect(row.locator(".thumb")).to_have_attribute("title", "Deleted: the images are gone")


async def test_a_job_card_deletes_its_finished_jobs_images_once_confirmed(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    response = await page.goto("/")
    assert response is not None
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await page.get_by_label("Choose images").set_input_files(
        [upload("mine.jpg", "image/jpeg", photo(320, 240))]
    )
    await use_pipeline(page, QUICK)
    await page.get_by_role("button", name="Upload and process 1 image").click()
    job = card(page, "mine.jpg")
    await expect(job).to_have_attribute("data-status", "succeeded", timeout=JOB_DEADLINE_MS)
    job_id = await job.get_attribute("data-job-id")
    assert job_id
    delete = job.get_by_role("button", name="Delete", exact=True)

    asked = answer_next_dialog(page, accept=False)
    await delete.click()
    assert asked == [
        "Delete the images of mine.jpg for good? The uploaded image and the result are "
        "deleted from the server (one another job still uses stays for it); the job's "
        "record stays."
    ]
    assert "erased_at" not in await _status(http, mesh, job_id)

    answer_next_dialog(page, accept=True)
    await delete.click()
    await expect(job).to_have_attribute("data-erased", "true", timeout=JOB_DEADLINE_MS)
    await expect(job.locator(".erased-note")).to_contain_text("the images are gone")
    await expect(job.locator(".card-body img")).to_have_count(0)
    await expect(delete).to_have_count(0)
    assert (await _status(http, mesh, job_id))["erased_by"] == "local"
