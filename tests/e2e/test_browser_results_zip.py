""" "Download all" on the upload page, in Chromium against the mesh: once the batch's jobs
succeeded, one click downloads a zip of their results, each entry the bytes /result
sends, named after the file chosen (tests/browser.py, tests/security/test_results_zip.py)."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile

import pytest
from playwright.async_api import Page, Route, expect

from tests.browser import (
    JOB_DEADLINE_MS,
    PageProblems,
    card,
    photo_like,
    screenshot,
    upload,
)
from tests.e2e.test_browser_uploads import use_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


async def test_download_all_is_one_zip_of_the_batchs_results(page: Page) -> None:
    problems = PageProblems(page)
    await page.goto("/")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    # One stem twice (any case): the second is made unique, as unzipping would clash.
    names = ["harbour.jpg", "Harbour.jpeg"]
    files = [
        upload(names[0], "image/jpeg", photo_like(320, 240, "JPEG")),
        upload(names[1], "image/jpeg", photo_like(300, 200, "JPEG")),
    ]
    await page.get_by_label("Choose images").set_input_files(files)
    download_all = page.locator("#download-all")
    await expect(download_all).to_be_hidden()  # nothing succeeded yet
    await page.get_by_role("button", name="Upload and process 2 images").click()
    for name in names:
        await expect(card(page, name)).to_have_attribute(
            "data-status", "succeeded", timeout=JOB_DEADLINE_MS
        )
    await expect(download_all).to_be_visible()
    await expect(download_all).to_have_text("Download all (2)")
    await expect(download_all).to_have_attribute("download", "")
    await screenshot(page, "download-all")

    async with page.expect_download() as downloading:
        await download_all.click()
    download = await downloading.value
    assert re.fullmatch(r"imagemesh-results-2\.zip", download.suggested_filename)
    archive = zipfile.ZipFile(io.BytesIO((await download.path()).read_bytes()))
    assert archive.testzip() is None

    digests = []
    for name in names:
        job_id = await card(page, name).get_attribute("data-job-id")
        assert job_id
        job = await (await page.request.get(f"/api/v1/jobs/{job_id}")).json()
        assert job["output"]["format"] == "jpeg"  # no pipeline: the format kept
        result = await page.request.get(f"/api/v1/jobs/{job_id}/result")
        digests.append(hashlib.sha256(await result.body()).hexdigest())
    assert archive.namelist() == ["harbour.jpg", "Harbour (2).jpg"]
    assert [hashlib.sha256(archive.read(name)).hexdigest() for name in archive.namelist()] == (
        digests
    )
    assert problems.unexpected() == []


async def test_download_all_holds_only_the_jobs_that_succeeded(page: Page) -> None:
    problems = PageProblems(page)
    await page.goto("/")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    # One pipeline for the batch: the crop fits the large image only, the small one fails.
    await use_pipeline(page, [{"op": "crop", "x": 400, "y": 0, "width": 40, "height": 40}])
    files = [
        upload("large.jpg", "image/jpeg", photo_like(640, 480, "JPEG")),
        upload("small.jpg", "image/jpeg", photo_like(320, 240, "JPEG")),
    ]
    await page.get_by_label("Choose images").set_input_files(files)
    await page.get_by_role("button", name="Upload and process 2 images").click()
    await expect(card(page, "large.jpg")).to_have_attribute(
        "data-status", "succeeded", timeout=JOB_DEADLINE_MS
    )
    await expect(card(page, "small.jpg")).to_have_attribute(
        "data-status", "failed", timeout=JOB_DEADLINE_MS
    )
    download_all = page.locator("#download-all")
    await expect(download_all).to_have_text("Download all (1)")
    async with page.expect_download() as downloading:
        await download_all.click()
    archive = zipfile.ZipFile(io.BytesIO((await (await downloading.value).path()).read_bytes()))
    assert archive.namelist() == ["large.jpg"]
    # "Clear finished" takes the jobs away, and the link with them.
    await page.get_by_role("button", name="Clear finished").click()
    await expect(download_all).to_be_hidden()
    assert problems.unexpected() == []


async def test_download_all_asks_for_no_more_than_the_server_zips(page: Page) -> None:
    """More succeeded jobs than a zip may hold (`zip_max_jobs`, here 1 by /about): the
    link takes the first ones and says so, rather than ask for a 413."""

    async def one_per_zip(route: Route) -> None:
        answer = await route.fetch()
        about = await answer.json()
        about["limits"]["zip_max_jobs"] = 1
        await route.fulfill(response=answer, json=about)

    await page.route("**/api/v1/about", one_per_zip)
    problems = PageProblems(page)
    await page.goto("/")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    files = [
        upload(f"first-{n}.jpg", "image/jpeg", photo_like(200 + n, 150, "JPEG")) for n in range(2)
    ]
    await page.get_by_label("Choose images").set_input_files(files)
    await page.get_by_role("button", name="Upload and process 2 images").click()
    for n in range(2):
        await expect(card(page, f"first-{n}.jpg")).to_have_attribute(
            "data-status", "succeeded", timeout=JOB_DEADLINE_MS
        )
    download_all = page.locator("#download-all")
    await expect(download_all).to_have_text("Download the first 1 (zip)")
    first = await card(page, "first-0.jpg").get_attribute("data-job-id")
    await expect(download_all).to_have_attribute("href", f"/api/v1/results.zip?ids={first}")
    assert problems.unexpected() == []
