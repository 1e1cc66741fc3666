"""The history page in a real headless Chromium (tests/browser.py) against the four services
as real processes: a loading state that marks the rows shown as stale while a slow answer
comes (and never lets a late answer overwrite a newer one), search by file name or job id,
and small square thumbnails loaded lazily instead of every row's full result."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, Request, Response, Route, expect

from tests.browser import PageProblems, photo_like, screenshot
from tests.conftest import Mesh
from tests.e2e.helpers import submit, wait_finished
from tests.security.test_history_api import thumbnail_made

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ROWS = "#history tbody tr"


async def open_history(page: Page, path: str = "/history") -> PageProblems:
    problems = PageProblems(page)
    response = await page.goto(path)
    assert response is not None
    assert response.ok, path
    await expect(page.locator("#history")).to_have_attribute("aria-busy", "false")
    return problems


async def finished_job(
    http: aiohttp.ClientSession, mesh: Mesh, data: bytes, pipeline: str, filename: str
) -> dict[str, Any]:
    response = await submit(http, mesh.upload_url, data, pipeline, filename=filename)
    assert response.status == 202, await response.text()
    return await wait_finished(http, mesh.upload_url, (await response.json())["id"])


def row(page: Page, job: dict[str, Any]) -> Any:
    return page.locator(f'#history tr[data-job-id="{job["id"]}"]')


class Traffic:
    """The URLs a page asked for, and the size of each thumbnail it received."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.sizes: dict[str, int] = {}

    def on_request(self, request: Request) -> None:
        self.asked.append(request.url)

    async def on_response(self, response: Response) -> None:
        if response.url.endswith("/thumbnail") and response.status == 200:
            self.sizes[response.url] = len(await response.body())


CROP_OUTSIDE = '[{"op": "crop", "x": 5000, "y": 0, "width": 10, "height": 10}]'


async def test_a_slow_filter_marks_the_rows_stale_and_a_late_answer_never_wins(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    good = await finished_job(http, mesh, photo_like(40, 30, "PNG"), "[]", "fast.png")
    bad = await finished_job(http, mesh, photo_like(40, 30, "JPEG"), CROP_OUTSIDE, "slow.jpg")
    assert (good["status"], bad["status"]) == ("succeeded", "failed")
    problems = await open_history(page)
    await expect(row(page, good)).to_be_visible()

    # The "Failed" answer is held, as a slow provenance query would hold it.
    held: list[Route] = []
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        held.append(route)
        await release.wait()
        with contextlib.suppress(Exception):  # the page may have given up on it
            await route.continue_()

    await page.route(re.compile(r"/api/v1/jobs\?.*status=failed"), hold)
    box = page.locator("#history")
    await page.get_by_label("Status").select_option("failed")
    await expect(box).to_have_attribute("aria-busy", "true")
    await expect(page.locator("#history-loading")).to_be_visible()
    await expect(page.locator("#history > .table-wrap")).to_have_class(re.compile(r"\bstale\b"))
    await expect(page.locator("#history > .table-wrap")).to_have_js_property("inert", True)
    await screenshot(page, "history-loading")

    # Asked again before the held answer came: the newer question's answer is shown...
    await page.get_by_label("Status").select_option("succeeded")
    await expect(box).to_have_attribute("aria-busy", "false")
    await expect(page.locator("#history-loading")).to_be_hidden()
    await expect(row(page, good)).to_be_visible()
    await expect(page.locator("#history > .stale")).to_have_count(0)
    # ...and stays, once the late answer to the earlier one arrives.
    assert len(held) == 1
    late: Request = held[0].request
    release.set()
    with contextlib.suppress(Exception):
        await late.response()
    await page.evaluate("() => new Promise((done) => requestAnimationFrame(() => done()))")
    await expect(row(page, bad)).to_have_count(0)
    await expect(page.locator(f"{ROWS}:not([data-status=succeeded])")).to_have_count(0)
    await expect(page.get_by_label("Status")).to_have_value("succeeded")
    assert problems.unexpected() == []


async def test_search_finds_jobs_by_a_file_name_word_or_a_job_id_prefix(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    word = f"w4{uuid.uuid4().hex[:8]}"
    beach = await finished_job(
        http, mesh, photo_like(40, 30, "PNG"), "[]", f"Beach_{word.upper()}-1.png"
    )
    other = await finished_job(http, mesh, photo_like(40, 30, "PNG"), "[]", "other.png")
    problems = await open_history(page)
    search = page.get_by_role("searchbox", name="Search")

    await search.fill(word[:7])  # a prefix of a word of the name, any case
    await expect(page.locator(ROWS)).to_have_count(1)
    await expect(row(page, beach)).to_be_visible()
    await expect(page).to_have_url(re.compile(rf"/history\?search={word[:7]}$"))

    await search.fill(other["id"][:8])  # the 8-character id shown everywhere
    await search.press("Enter")
    await expect(page.locator(ROWS)).to_have_count(1)
    await expect(row(page, other)).to_be_visible()

    await page.get_by_label("Status").select_option("failed")
    await expect(page.locator("#history .empty-state")).to_contain_text(
        f"No failed jobs match \u201c{other['id'][:8]}\u201d"
    )
    await page.get_by_label("Status").select_option("")
    await search.fill("")
    await search.press("Enter")
    await expect(row(page, beach)).to_be_visible()
    await expect(row(page, other)).to_be_visible()

    # A search in the address is the page's search.
    await open_history(page, f"/history?search={word}")
    await expect(search).to_have_value(word)
    await expect(page.locator(ROWS)).to_have_count(1)
    assert problems.unexpected() == []


async def test_history_thumbnails_are_small_lazy_squares_not_the_results(
    page: Page, phone: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    wide = await finished_job(http, mesh, photo_like(600, 200, "JPEG"), "[]", "wide.jpg")
    await thumbnail_made(http, mesh.upload_url, wide["id"])
    for viewer in (page, phone):
        traffic = Traffic()
        viewer.on("request", traffic.on_request)
        viewer.on("response", traffic.on_response)
        problems = await open_history(viewer)
        image = row(viewer, wide).locator("img.thumb")
        assert await image.get_attribute("loading") == "lazy"
        await expect(image).to_have_js_property("complete", True)
        natural = await image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
        assert natural == [96, 96], natural
        box = await image.bounding_box()
        assert box is not None
        assert abs(box["width"] - box["height"]) < 0.5, box
        assert box["width"] >= 40, box
        fit = await image.evaluate("(img) => getComputedStyle(img).objectFit")
        assert fit == "cover"
        thumb_url = f"{mesh.upload_url}/api/v1/jobs/{wide['id']}/thumbnail"
        assert thumb_url in traffic.asked
        # No row downloads a full result any more.
        assert not [url for url in traffic.asked if url.endswith("/result")], traffic.asked
        assert 0 < traffic.sizes.get(thumb_url, 0) < 8 * 1024, traffic.sizes
        assert problems.unexpected() == []
    await screenshot(phone, "phone-history-thumbnails")
