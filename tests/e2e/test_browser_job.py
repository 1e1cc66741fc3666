"""The job page in a real headless Chromium (tests/browser.py): the before/after comparison,
the operator links and the lineage panel, against the four services as real processes.

As in test_browser.py, waits are Playwright expectations on locators (the pages' CSP
forbids `eval`, so no `wait_for_function` with a string predicate)."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, FloatRect, Page, Route, expect

from tests.browser import JOB_DEADLINE_MS, PageProblems, page_on, screenshot
from tests.conftest import Mesh, complete_trail
from tests.e2e.helpers import photo, submit, wait_finished
from tests.waiting import async_wait_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


async def finished_job(
    http: aiohttp.ClientSession, mesh: Mesh, data: bytes, pipeline: str, filename: str
) -> dict[str, Any]:
    response = await submit(http, mesh.upload_url, data, pipeline, filename=filename)
    assert response.status == 202, await response.text()
    job = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
    assert job["status"] == "succeeded", job
    return job


def honest_change(before: int, after: int) -> str:
    """The size change as the page must say it: never 0 or 100 % for a change that is not."""
    change = (after - before) / before * 100
    digits = 0
    while round(abs(change), digits) == 0 or (change < 0 and round(abs(change), digits) == 100):
        digits += 1
    sign = "\u2212" if change < 0 else "+"
    return f"{sign}{abs(change):.{digits}f}\u00a0%"


async def box(page: Page, selector: str) -> FloatRect:
    found = await page.locator(selector).bounding_box()
    assert found is not None, selector
    return found


async def test_before_and_after_compare_at_one_scale_with_a_slider_zoom_and_honest_sizes(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    # A noisy PNG of several hundred KiB made into a WebP of a few KiB: a change of 99.x %.
    pipeline = '[{"op": "thumbnail", "width": 64}, {"op": "convert", "format": "webp"}]'
    job = await finished_job(http, mesh, photo(640, 480, "PNG"), pipeline, "noisy.png")
    expected = honest_change(job["input"]["bytes"], job["output"]["bytes"])
    assert expected.startswith("\u221299."), expected

    # The result is held back: until it arrives the comparison says it is loading.
    arrived = asyncio.Event()

    async def slow_result(route: Route) -> None:
        await arrived.wait()
        await route.continue_()

    await page.route(re.compile(r"/api/v1/jobs/[^/]+/result$"), slow_result)
    problems = PageProblems(page)
    await page.goto(f"/jobs/{job['id']}")
    comparison = page.locator("#job-result .comparison")
    await expect(comparison).to_have_attribute("data-state", "loading")
    await expect(comparison.locator(".cmp-loading")).to_be_visible()
    await expect(comparison.locator(".cmp-loading")).to_contain_text("Loading")
    await expect(comparison.locator(".cmp-stage")).to_be_hidden()
    arrived.set()
    await expect(comparison).to_have_attribute("data-state", "ready", timeout=JOB_DEADLINE_MS)
    await expect(comparison.locator(".cmp-loading")).to_be_hidden()

    # One frame: both images drawn over the same box, whatever their pixel sizes.
    await expect(page.locator("figure.before")).to_have_attribute("data-width", "640")
    await expect(page.locator("figure.after")).to_have_attribute("data-width", "64")
    before, after = await box(page, "figure.before img"), await box(page, "figure.after img")
    assert before == after, (before, after)
    captions = comparison.locator(".cmp-captions")
    await expect(captions.locator(".before")).to_contain_text("640 \u00d7 480")
    await expect(captions.locator(".after")).to_contain_text("64 \u00d7 48")
    await expect(captions.locator(".after .change")).to_have_text(expected)
    await expect(page.get_by_text("100%")).to_have_count(0)

    # The divider: a slider, moved by keyboard, that uncovers the before image.
    divider = comparison.get_by_role("slider", name=re.compile("before", re.I))
    await expect(divider).to_have_attribute("aria-valuenow", "50")
    await expect(divider).to_have_attribute("aria-valuemin", "0")
    await expect(divider).to_have_attribute("aria-valuemax", "100")
    await divider.focus()
    await page.keyboard.press("ArrowLeft")
    await expect(divider).to_have_attribute("aria-valuenow", "45")
    await page.keyboard.press("End")
    await expect(divider).to_have_attribute("aria-valuenow", "100")
    await expect(divider).to_have_attribute("aria-valuetext", re.compile(r"before", re.I))
    # Dragged: the divider follows the pointer.
    stage = await box(page, "#job-result .cmp-stage")
    handle = await box(page, "#job-result .cmp-divider")
    await page.mouse.move(handle["x"] + handle["width"] / 2, stage["y"] + stage["height"] / 2)
    await page.mouse.down()
    await page.mouse.move(stage["x"] + stage["width"] * 0.25, stage["y"] + stage["height"] / 2)
    await page.mouse.up()
    await expect(divider).to_have_attribute("aria-valuenow", re.compile(r"^2[3-7]$"))

    # Zoom: 1:1 shows the original pixel for pixel; Fit brings it back into the frame.
    await comparison.get_by_role("button", name="1:1").click()
    await expect(comparison.get_by_role("button", name="1:1")).to_have_attribute(
        "aria-pressed", "true"
    )
    assert (await box(page, "figure.before img"))["width"] == pytest.approx(640, abs=1)
    assert (await box(page, "figure.after img"))["width"] == pytest.approx(640, abs=1)
    await comparison.get_by_role("button", name="Zoom in").click()
    assert (await box(page, "figure.before img"))["width"] > 1000
    await comparison.get_by_role("button", name="Fit").click()
    viewport = await box(page, "#job-result .cmp-viewport")
    assert (await box(page, "figure.before img"))["width"] <= viewport["width"] + 1
    # A narrower window (a phone turned): Fit follows, and nothing scrolls sideways.
    await page.set_viewport_size({"width": 420, "height": 800})

    async def refitted() -> bool:
        frame = await box(page, "#job-result .cmp-viewport")
        image = await box(page, "figure.before img")
        return frame["width"] < 420 and image["width"] <= frame["width"] + 1

    await async_wait_for(refitted, timeout=5, what="the frame refitted to 420 px")
    widths = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], widths
    await page.set_viewport_size({"width": 1100, "height": 900})
    await screenshot(page, "job-compare")
    assert problems.unexpected() == []


def view_query(fragment: str) -> tuple[str, dict[str, Any]]:
    """A Fauxton hash route (`#/database/...?...`): its path and its query, keys decoded."""
    route, _, query = fragment.partition("?")
    params: dict[str, Any] = dict(urllib.parse.parse_qsl(query))
    for name in ("startkey", "endkey"):
        params[name] = json.loads(params[name])
    return route, params


async def test_operator_links_open_the_jobs_view_and_the_queues_on_the_pages_host(
    page: Page, browser: Browser, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    job = await finished_job(http, mesh, photo(200, 150), '[{"op": "grayscale"}]', "a.jpg")
    async with http.get(f"{mesh.upload_url}/api/v1/about") as response:
        links = (await response.json())["links"]
    configured = urllib.parse.urlsplit(links["fauxton"])
    db = re.sub(r"^#?/?database/", "", configured.fragment).split("/")[0]
    host = urllib.parse.urlsplit(mesh.upload_url).hostname
    assert host == "127.0.0.1"

    await page.goto(f"/jobs/{job['id']}")
    fauxton = page.get_by_role("link", name="Provenance documents in Fauxton")
    href = await fauxton.get_attribute("href")
    assert href is not None
    link = urllib.parse.urlsplit(href)
    # The CouchDB port of the setting, on the host this page came from (the setting names
    # a loopback host, which is the browser's own machine, not necessarily the server).
    assert (link.hostname, link.port, link.path) == (host, configured.port or 5984, "/_utils/")
    route, query = view_query(urllib.parse.unquote(link.fragment))
    assert route == f"/database/{db}/_design/provenance/_view/by_job"
    assert query == {
        "include_docs": "true",
        "startkey": [job["id"]],
        "endkey": [job["id"], {}],
    }
    rabbitmq = page.get_by_role("link", name=re.compile(r"^RabbitMQ console"))
    queues = urllib.parse.urlsplit(await rabbitmq.get_attribute("href") or "")
    assert (queues.hostname, queues.fragment) == (host, "/queues")
    # Not signed in to Fauxton, the view is a blank pane: a second link signs in first.
    sign_in = page.get_by_role("link", name="sign in, then see them")
    signing = urllib.parse.urlsplit(await sign_in.get_attribute("href") or "")
    assert (signing.hostname, signing.port, signing.path) == (link.hostname, link.port, "/_utils/")
    login, _, urlback = signing.fragment.partition("?urlback=")
    assert login == "/login"
    unquote = urllib.parse.unquote
    assert unquote(unquote(urlback)) == unquote(link.fragment)

    # The same links on this test's database: signed in, Fauxton shows this job's documents.
    docs = await async_wait_for(lambda: complete_trail(mesh.env, job["id"]), timeout=20)
    couch = mesh.env["COUCHDB_URL"].rstrip("/")
    ours = urllib.parse.quote(f"/database/{urllib.parse.quote(mesh.env['COUCHDB_DB'])}/", safe="")
    theirs = urllib.parse.quote(f"/database/{db}/", safe="")
    async with page_on(browser, couch, {"width": 1400, "height": 1000}) as faux:
        await faux.goto(f"{couch}/_utils/#/login?urlback={urlback.replace(theirs, ours, 1)}")
        await faux.fill("#username", mesh.env["COUCHDB_AUDITOR_USER"])
        await faux.fill("#password", mesh.env["COUCHDB_AUDITOR_PASSWORD"])
        await faux.click("#submit")
        rows = faux.locator("#doc-list .doc-row")
        await expect(rows).to_have_count(len(docs))
        await expect(faux).to_have_url(re.compile(r"_view/by_job\?"))
        shown = [json.loads(text) for text in await rows.locator(".doc-data pre").all_inner_texts()]
        assert all(row["key"][0] == job["id"] and row["doc"] for row in shown)


async def test_the_lineage_groups_jobs_by_image_collapses_long_lists_and_says_what_it_means(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    # The same bytes, the same pipeline, eight times: one input used by eight jobs, and one
    # output (reused) that each of them led to.
    data = photo(160, 120)
    pipeline = '[{"op": "thumbnail", "width": 80}]'
    jobs = [await finished_job(http, mesh, data, pipeline, f"shot-{n}.jpg") for n in range(8)]
    first = jobs[0]
    problems = PageProblems(page)
    await page.goto(f"/jobs/{first['id']}")

    inputs = page.locator(f'.lineage-card[data-sha256="{first["input"]["sha256"]}"]')
    used_by = inputs.locator(".used-by > li")
    await expect(inputs.locator(".used-by-title")).to_have_text("Used as input by 8 jobs")
    await expect(used_by.filter(visible=True)).to_have_count(5, timeout=JOB_DEADLINE_MS)
    await expect(used_by.first).to_contain_text("(this job)")
    await expect(used_by.first).to_contain_text("shot-0.jpg")
    await expect(used_by.nth(1)).to_contain_text(re.compile(r"shot-\d\.jpg"))
    await expect(used_by.nth(1).locator("time")).to_have_count(1)
    show_all = inputs.locator(".used-by + button")
    await expect(show_all).to_have_text("Show all 8 jobs")
    await expect(show_all).to_have_attribute("aria-expanded", "false")
    await show_all.click()
    await expect(used_by.filter(visible=True)).to_have_count(8)
    await expect(used_by.nth(7)).to_contain_text(re.compile(r"shot-\d\.jpg"))

    # What it led to: one image (the same output each time), not eight bare hashes.
    led_to = inputs.locator(".led-to > li")
    await expect(led_to).to_have_count(1)
    await expect(led_to).to_have_attribute("data-sha256", first["output"]["sha256"])
    await expect(led_to).to_contain_text("made directly from this image by 8 jobs")
    await expect(inputs).not_to_contain_text("(1 on)")
    await expect(page.locator(".lineage-help")).to_contain_text("one step on is an image made")
    await screenshot(page, "job-lineage")
    assert problems.unexpected() == []


async def test_an_original_the_browser_cannot_show_leaves_the_result_alone_with_a_note(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    # Chromium shows no TIFF: the frame shows the result alone, says why, loads no longer.
    pipeline = '[{"op": "convert", "format": "jpeg"}]'
    job = await finished_job(http, mesh, photo(120, 90, "TIFF"), pipeline, "scan.tiff")
    problems = PageProblems(page)
    await page.goto(f"/jobs/{job['id']}")
    comparison = page.locator("#job-result .comparison")
    await expect(comparison).to_have_attribute("data-state", "ready", timeout=JOB_DEADLINE_MS)
    await expect(comparison).to_have_attribute("data-missing", "before")
    await expect(comparison.locator(".no-preview")).to_have_text(
        "No preview of the before: this browser cannot show TIFF images."
    )
    await expect(page.locator("figure.after img")).to_be_visible()
    await expect(page.locator("figure.before")).to_be_hidden()
    await expect(comparison.get_by_role("slider")).to_be_hidden()
    await expect(comparison.locator(".cmp-loading")).to_be_hidden()
    assert problems.unexpected() == []
