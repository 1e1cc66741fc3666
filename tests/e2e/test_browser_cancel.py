"""The Cancel buttons of the job page and of a job card, in a real headless Chromium
(tests/browser.py) against the four services as real processes: shown while the job
runs, each asks for confirmation (a dismissed dialog changes nothing), then the job ends
cancelled and the button goes."""

from __future__ import annotations

import json

import aiohttp
import pytest
from playwright.async_api import Dialog, Page, expect

from tests.browser import JOB_DEADLINE_MS, card, upload
from tests.conftest import Mesh
from tests.e2e.helpers import photo, submit
from tests.e2e.test_browser_uploads import use_pipeline
from tests.e2e.test_cancel import SLOW

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_the_job_page_cancels_a_running_job_once_confirmed(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    response = await submit(http, mesh.upload_url, photo(3000, 2000), SLOW, filename="big.jpg")
    assert response.status == 202, await response.text()
    job_id = (await response.json())["id"]
    await page.goto(f"/jobs/{job_id}")
    button = page.locator("#job-cancel")
    await expect(button).to_be_visible()

    asked: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.dismiss()

    page.once("dialog", dismiss)
    await button.click()
    assert asked == ["Cancel this job? It stops, and no result is kept."]
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job_id}") as status:
        assert (await status.json())["status"] in {"queued", "processing"}

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.once("dialog", accept)
    await button.click()
    await expect(page.locator("#job-badge .badge")).to_have_text(
        "Cancelled", timeout=JOB_DEADLINE_MS
    )
    await expect(page.locator("#job-live")).to_have_text(
        "Cancelled by local: no result was stored."
    )
    await expect(button).to_be_hidden()


async def test_a_job_card_cancels_its_job_once_confirmed(page: Page, mesh: Mesh) -> None:
    response = await page.goto("/")
    assert response is not None
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await page.get_by_label("Choose images").set_input_files(
        [upload("big.jpg", "image/jpeg", photo(3000, 2000))]
    )
    await use_pipeline(page, json.loads(SLOW))
    await page.get_by_role("button", name="Upload and process 1 image").click()
    job = card(page, "big.jpg")
    await expect(job).to_have_attribute("data-status", "processing", timeout=JOB_DEADLINE_MS)
    asked: list[str] = []

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.once("dialog", accept)
    await job.get_by_role("button", name="Cancel", exact=True).click()
    await expect(job).to_have_attribute("data-status", "cancelled", timeout=JOB_DEADLINE_MS)
    assert asked == ["Cancel the job of big.jpg? It stops, and no result is kept."]
    await expect(job.locator(".status-line")).to_have_text("Cancelled by local")
    await expect(job.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)
