"""Every page of the web app, site-wide: at a laptop's 1366x900 and a phone's 390x844 each
page loads with no console error or failed request and nothing scrolls sideways, and its
full-page screenshot is saved (`.artifacts/screenshots/site-<page>-<width>.png`); at
320 px (the narrowest phone) nothing scrolls sideways either; with the system in dark
mode (`prefers-color-scheme: dark`) the pages are dark, text still readable.

Pages run under the service's Content-Security-Policy: waits are Playwright expectations."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Literal

import aiohttp
import pytest
from playwright.async_api import Browser, Locator, Page, ViewportSize, expect

from tests.browser import (
    JOB_DEADLINE_MS,
    PageProblems,
    images_loaded,
    page_on,
    photo_like,
    screenshot,
)
from tests.conftest import Mesh
from tests.e2e.helpers import submit, wait_finished
from tests.security.conftest import upload_replica
from upload.tokens import new_token, token_hash

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

LAPTOP: ViewportSize = {"width": 1366, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
NARROWEST: ViewportSize = {"width": 320, "height": 640}


@dataclass(frozen=True)
class SitePage:
    name: str
    path: str
    ready: str
    """A selector visible once the page's script has drawn it."""


PAGES = [
    SitePage("upload", "/", "body[data-ready='true']"),
    SitePage("history", "/history", "#history tbody tr"),
    SitePage("job", "/jobs/{job}", "#timeline ol.timeline"),
    SitePage("api-docs", "/api/docs", ".endpoint"),
]
_finished: dict[str, str] = {}


@pytest.fixture
async def job_id(mesh: Mesh) -> str:
    """A finished job for the job page (one for the whole module)."""
    if mesh.upload_url not in _finished:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            pipeline = '[{"op": "thumbnail", "width": 160, "height": 160}]'
            response = await submit(
                http, mesh.upload_url, photo_like(640, 480, "JPEG"), pipeline,
                filename="a-photo-with-a-rather-long-name-from-a-camera.jpg",
            )  # fmt: skip
            assert response.status == 202, await response.text()
            job = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
            assert job["status"] == "succeeded", job
            _finished[mesh.upload_url] = job["id"]
    return _finished[mesh.upload_url]


@pytest.fixture
async def browser_page(
    request: pytest.FixtureRequest, browser: Browser, mesh: Mesh
) -> AsyncIterator[Page]:
    viewport: ViewportSize = request.param
    async with page_on(browser, mesh.upload_url, viewport) as opened:
        yield opened


async def opened(page: Page, site_page: SitePage, job_id: str) -> PageProblems:
    """`site_page` loaded and drawn (its images too); the problems it meets from the start."""
    problems = PageProblems(page)
    response = await page.goto(site_page.path.format(job=job_id))
    assert response is not None
    assert response.ok, f"{site_page.path}: HTTP {response.status}"
    await expect(page.locator(site_page.ready).first).to_be_attached(timeout=JOB_DEADLINE_MS)
    await images_loaded(page.locator("main"))
    return problems


async def sideways_overflow(page: Page) -> list[str]:
    """What sticks out of the viewport sideways: the page's own scroll width, and each
    element whose box ends right of it (not inside a scrolling box of its own)."""
    return list(
        await page.evaluate(
            """() => {
              const width = document.documentElement.clientWidth;
              const out = [];
              if (document.documentElement.scrollWidth > width) {
                out.push(`page ${document.documentElement.scrollWidth}px in ${width}px`);
              }
              const scrolls = (el) => {
                for (let p = el.parentElement; p; p = p.parentElement) {
                  const o = getComputedStyle(p).overflowX;
                  if (["auto", "scroll", "hidden", "clip"].includes(o)) { return true; }
                }
                return false;
              };
              for (const el of document.querySelectorAll("body *")) {
                const box = el.getBoundingClientRect();
                if (box.width && box.right > width + 1 && !scrolls(el)) {
                  const name = `${el.tagName.toLowerCase()}.${el.className}`;
                  out.push(`${name} ends at ${Math.round(box.right)}px`);
                }
              }
              return out.slice(0, 10);
            }"""
        )
    )


@pytest.mark.parametrize("site_page", PAGES, ids=[p.name for p in PAGES])
@pytest.mark.parametrize(
    "browser_page", [LAPTOP, PHONE], ids=["1366", "390"], indirect=True
)  # fmt: skip
async def test_every_page_at_both_widths(
    browser_page: Page, site_page: SitePage, job_id: str
) -> None:
    problems = await opened(browser_page, site_page, job_id)
    assert await sideways_overflow(browser_page) == []
    width = browser_page.viewport_size["width"] if browser_page.viewport_size else 0
    await screenshot(browser_page, f"site-{site_page.name}-{width}")
    assert problems.unexpected() == []


@pytest.mark.parametrize("browser_page", [NARROWEST], ids=["320"], indirect=True)
async def test_nothing_scrolls_sideways_at_320_px(browser_page: Page, job_id: str) -> None:
    for site_page in PAGES:
        problems = await opened(browser_page, site_page, job_id)
        overflow = await sideways_overflow(browser_page)
        assert overflow == [], site_page.path
        await screenshot(browser_page, f"site-{site_page.name}-320")
        assert problems.unexpected() == [], site_page.path


def _luminance(rgb: str) -> float:
    """Relative luminance (0 black, 1 white) of a computed `rgb(r, g, b)` colour."""
    parts = [float(x) for x in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    linear = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in parts]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


@pytest.mark.parametrize("browser_page", [LAPTOP], ids=["1366"], indirect=True)
async def test_dark_mode_follows_the_system(browser_page: Page, job_id: str) -> None:
    await browser_page.emulate_media(color_scheme="dark")
    for site_page in PAGES:
        problems = await opened(browser_page, site_page, job_id)
        colours = await browser_page.evaluate(
            """() => {
              const style = (el) => getComputedStyle(el);
              const painted = [document.body, document.documentElement]
                .map((el) => style(el).backgroundColor).find((c) => !c.endsWith(", 0)"));
              return [painted || "rgb(255, 255, 255)", style(document.body).color,
                      style(document.querySelector("h1")).color];
            }"""
        )
        background, text, heading = colours
        assert _luminance(background) < 0.05, (site_page.name, colours)
        assert _luminance(text) > 0.5, (site_page.name, colours)
        assert _luminance(heading) > 0.5, (site_page.name, colours)
        await screenshot(browser_page, f"site-{site_page.name}-dark")
        assert problems.unexpected() == [], site_page.path


def endpoint(page: Page, method: str, path: str) -> Locator:
    return page.locator(".endpoint").filter(
        has=page.locator(
            f'> summary:has(.method[data-method="{method}"]):has(.path:text-is("{path}"))'
        )
    )


@pytest.mark.parametrize("browser_page", [PHONE], ids=["390"], indirect=True)
async def test_api_docs_give_examples_and_try_get_calls(browser_page: Page, job_id: str) -> None:
    """Each operation has an example (curl, and an answer); a GET can be tried from the
    page (same origin, GET only: there is no form for POST); the event stream is shown
    event by event; tables scroll inside their box on a phone."""
    page = browser_page
    problems = await opened(page, PAGES[3], job_id)
    assert (
        await page.locator(".endpoint").count() == await page.locator(".endpoint .example").count()
    )
    post = endpoint(page, "post", "/api/v1/jobs")
    await post.locator("> summary").click()
    await expect(post.locator(".example-request")).to_contain_text("-F file=@photo.jpg")
    await expect(post.locator(".example-response")).to_contain_text('"status"')
    await expect(post.locator("form.try-it")).to_have_count(0)

    operations = endpoint(page, "get", "/api/v1/operations")
    await operations.locator("> summary").click()
    await operations.get_by_role("button", name="Send").click()
    await expect(operations.locator(".try-status")).to_contain_text("200")
    await expect(operations.locator(".try-output")).to_contain_text('"operations"')

    job = endpoint(page, "get", "/api/v1/jobs/{job_id}")
    await job.locator("> summary").click()
    await job.get_by_role("textbox", name="job_id").fill(job_id)
    await job.get_by_role("button", name="Send").click()
    await expect(job.locator(".try-status")).to_contain_text("200")
    await expect(job.locator(".try-output")).to_contain_text(job_id)

    stream = endpoint(page, "get", "/api/v1/jobs/{job_id}/events")
    await stream.locator("> summary").click()
    await expect(stream.locator(".stream-events > li")).to_have_count(2)
    await expect(stream.locator(".stream-events")).to_contain_text("event: status")
    await expect(stream.locator(".example-response")).to_contain_text("event: step")

    history = endpoint(page, "get", "/api/v1/jobs")
    await history.locator("> summary").click()
    wrap = history.locator(".table-wrap")
    assert await wrap.evaluate("(el) => getComputedStyle(el).overflowX") == "auto"
    assert await sideways_overflow(page) == []
    await screenshot(page, "api-docs-try-it-390")
    assert problems.unexpected() == []


@pytest.fixture(scope="module")
def signing_in(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An upload replica with API tokens on, where the sign-in page is served: its URL."""
    entry = f"site-{uuid.uuid4().hex[:8]}:{token_hash(new_token())}"
    with upload_replica(
        mesh,
        tmp_path_factory.mktemp("upload-signin"),
        UPLOAD_API_TOKEN_HASHES=entry,
        UPLOAD_SESSION_SECRET=f"site-test-secret-{uuid.uuid4().hex}",
    ) as replica:
        yield replica.upload_url


@pytest.mark.parametrize(
    ("viewport", "scheme"),
    [(LAPTOP, "light"), (PHONE, "light"), (NARROWEST, "light"), (PHONE, "dark")],
    ids=["1366", "390", "320", "390-dark"],
)
async def test_the_sign_in_page(
    browser: Browser, signing_in: str, viewport: ViewportSize, scheme: Literal["light", "dark"]
) -> None:
    async with page_on(browser, signing_in, viewport) as page:
        await page.emulate_media(color_scheme=scheme)
        problems = await opened(page, SitePage("signin", "/signin", "#sign-in"), "")
        assert await sideways_overflow(page) == []
        suffix = "-dark" if scheme == "dark" else ""
        await screenshot(page, f"site-signin-{viewport['width']}{suffix}")
        assert problems.unexpected() == []
