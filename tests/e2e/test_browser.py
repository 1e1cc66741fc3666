"""The upload form in a real headless Chromium, against the four services as real processes.

Playwright drives Debian's Chromium (``/usr/bin/chromium``): ``playwright install`` cannot
download browsers here. The async API is used because pytest-asyncio runs the tests in one
session-wide event loop, where playwright's sync API refuses to run."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageFilter
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    FilePayload,
    Page,
    Response,
    Route,
    async_playwright,
    expect,
)

from tests.conftest import Mesh

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/imagemesh-form.png")
JOB_DEADLINE_MS = 60_000
UI_DEADLINE_MS = 10_000
TIMES = "\N{MULTIPLICATION SIGN}"  # the form writes sizes as "256 times 171"


def photo_like(width: int, height: int, fmt: str) -> bytes:
    """A smooth colour gradient with grain and some edges: compresses and dithers like a photo."""
    size = (width, height)
    across = Image.linear_gradient("L").rotate(90).resize(size)
    down = Image.linear_gradient("L").resize(size)
    grain = Image.effect_noise(size, 40).filter(ImageFilter.GaussianBlur(1))
    mandel = Image.effect_mandelbrot(size, (-2.0, -1.2, 1.0, 1.2), 60)
    red = ImageChops.blend(across, grain, 0.25)
    green = ImageChops.blend(down, mandel, 0.35)
    blue = ImageChops.blend(ImageChops.invert(across), grain, 0.4)
    image = Image.merge("RGB", (red, green, blue))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def upload(name: str, mime_type: str, data: bytes) -> FilePayload:
    """A file for `set_input_files`, as if picked from disk."""
    return {"name": name, "mimeType": mime_type, "buffer": data}


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    # `launch` gives Chromium a fresh temporary profile (--user-data-dir) of its own and
    # removes it on close; it refuses an explicit --user-data-dir.
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


class PageProblems:
    """Uncaught exceptions, console errors and failed or refused requests seen by a page."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.messages.append(f"uncaught: {exc}"))
        page.on("response", self._response)
        page.on(
            "requestfailed",
            lambda request: self.messages.append(f"request failed: {request.url}"),
        )

    def _console(self, message: ConsoleMessage) -> None:
        # Chromium logs every HTTP error as "Failed to load resource" without the URL;
        # `_response` records those with their URL instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.messages.append(f"console: {message.text}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.messages.append(f"HTTP {response.status} {response.url}")


@pytest.fixture
async def page(browser: Browser, mesh: Mesh) -> AsyncIterator[Page]:
    context = await browser.new_context(
        base_url=mesh.upload_url, viewport={"width": 1000, "height": 900}
    )
    opened = await context.new_page()
    opened.set_default_timeout(UI_DEADLINE_MS)
    try:
        yield opened
    finally:
        await context.close()


async def open_form(page: Page) -> PageProblems:
    problems = PageProblems(page)
    response = await page.goto("/")
    assert response is not None
    assert response.ok, response.status
    # The operations list comes from the API: once it is shown, app.js has run.
    await expect(page.locator("#operations")).to_contain_text("thumbnail", timeout=UI_DEADLINE_MS)
    return problems


async def wait_for_outcome(page: Page, mesh: Mesh, outcome: str = "succeeded") -> None:
    """Wait until the form shows the job's `outcome`; on time-out say what the page and the
    services were saying, since a stuck "queued" alone explains nothing."""
    try:
        await expect(page.locator("#job-status")).to_have_attribute(
            "data-status", outcome, timeout=JOB_DEADLINE_MS
        )
    except AssertionError as exc:
        shown = {
            selector: await page.locator(selector).text_content()
            for selector in ("#job-id", "#job-status", "#job-note", "#job-error", "#form-error")
        }
        logs = "\n".join(
            f"--- {name} ---\n"
            + "\n".join(line[:300] for line in mesh.log_tail(name, lines=6).splitlines())
            for name in mesh.processes
        )
        raise AssertionError(f"{exc}\nthe page shows: {shown}\n{logs}") from None


async def test_jpeg_thumbnail_through_the_form_with_the_keyboard(page: Page, mesh: Mesh) -> None:
    problems = await open_form(page)

    # Accessibility basics: every control has a label that names it.
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea")]
               .filter((el) => el.labels === null || el.labels.length === 0
                               || el.labels[0].textContent.trim() === "")
               .map((el) => el.id || el.outerHTML)"""
    )
    assert unlabelled == []
    await expect(page.get_by_label("What to do")).to_have_id("preset")
    await expect(page.get_by_label("Pipeline (JSON list of operations)")).to_have_id("pipeline")

    await page.set_input_files(
        "#file",
        files=[upload("photo.jpg", "image/jpeg", photo_like(1200, 800, "JPEG"))],
    )
    await page.select_option("#preset", label=f"Thumbnail, fit in 256{TIMES}256")
    pipeline = await page.input_value("#pipeline")
    assert '"op":"thumbnail"' in pipeline
    assert '"width":256' in pipeline

    # Submit with the keyboard only.
    await page.focus("#submit")
    assert await page.evaluate("document.activeElement.id") == "submit"
    await page.keyboard.press("Enter")

    await expect(page.locator("#job")).to_be_visible()
    await expect(page.locator("#job-id")).to_have_text(re.compile(r"\S+"), timeout=UI_DEADLINE_MS)
    await wait_for_outcome(page, mesh)
    await expect(page.locator("#job-status")).to_have_text("succeeded")
    await expect(page.locator("#job-error")).to_be_hidden()
    await expect(page.locator("#form-error")).to_be_hidden()

    job_id = (await page.text_content("#job-id") or "").strip()
    result_path = f"/api/v1/jobs/{job_id}/result"

    image = page.locator("#result-image")
    await expect(image).to_be_visible()
    await expect(image).to_have_attribute("src", result_path)
    await page.wait_for_function(
        """() => { const img = document.getElementById("result-image");
                   return img.complete && img.naturalWidth > 0; }""",
        timeout=JOB_DEADLINE_MS,
    )
    natural = await image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    assert natural == [256, 171]

    await expect(page.locator("#result-info")).to_have_text(
        re.compile(rf"^256{TIMES}171 jpeg, [1-9]\d* bytes$")
    )
    download = page.locator("#result-download")
    await expect(download).to_be_visible()
    await expect(download).to_have_attribute("href", result_path)
    download_url = await download.evaluate("(a) => a.href")
    assert download_url == page.url.rstrip("/") + result_path

    result = await page.request.get(download_url)
    assert result.status == 200
    assert result.headers["content-type"].split(";")[0].strip() == "image/jpeg"
    body = await result.body()
    assert body.startswith(b"\xff\xd8\xff")
    info = (await page.text_content("#result-info")) or ""
    assert f"{len(body)} bytes" in info
    with Image.open(io.BytesIO(body)) as decoded:
        assert decoded.size == (256, 171)

    await page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert problems.messages == []


async def test_png_dither_through_the_form(page: Page, mesh: Mesh) -> None:
    problems = await open_form(page)
    await page.set_input_files(
        "#file",
        files=[upload("photo.png", "image/png", photo_like(480, 320, "PNG"))],
    )
    await page.select_option("#preset", label="Dither to black and white (like the original)")
    assert '"op":"dither"' in await page.input_value("#pipeline")
    await page.click("#submit")

    await wait_for_outcome(page, mesh)
    await expect(page.locator("#result-info")).to_contain_text(f"480{TIMES}320 png")

    src = await page.locator("#result-image").evaluate("(img) => img.src")
    result = await page.request.get(src)
    assert result.status == 200
    assert result.headers["content-type"].split(";")[0].strip() == "image/png"
    body = await result.body()
    assert body.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(body)) as decoded:
        assert decoded.format == "PNG"
        assert decoded.size == (480, 320)
        histogram = decoded.convert("L").histogram()
    levels = {value for value, count in enumerate(histogram) if count}
    assert levels == {0, 255}

    await page.wait_for_function(
        """() => { const img = document.getElementById("result-image");
                   return img.complete && img.naturalWidth === 480; }""",
        timeout=JOB_DEADLINE_MS,
    )
    assert problems.messages == []


async def test_a_text_file_named_jpg_is_refused_with_the_apis_message(page: Page) -> None:
    problems = await open_form(page)
    await page.set_input_files(
        "#file",
        files=[
            upload(
                "fake.jpg", "image/jpeg", b"This is not an image, whatever its name says.\n" * 20
            )
        ],
    )
    await page.click("#submit")

    error = page.locator("#form-error")
    await expect(error).to_be_visible(timeout=UI_DEADLINE_MS)
    await expect(error).to_contain_text("JPEG")
    await expect(error).to_contain_text("PNG")
    await expect(page.locator("#job")).to_be_hidden()
    await expect(page.locator("#submit")).to_be_enabled()
    # The 415 answer itself shows up in the console as a failed resource load; nothing else may.
    unexpected = [m for m in problems.messages if "415" not in m]
    assert unexpected == []


async def test_the_form_says_why_the_status_is_stuck_and_keeps_following(
    page: Page, mesh: Mesh
) -> None:
    """While the status endpoint answers 503 the form shows the API's reason, then recovers."""
    outage = {"code": "unavailable", "message": "the provenance service is unavailable"}
    seen = asyncio.Event()
    refused = 0

    async def status(route: Route) -> None:
        nonlocal refused
        if route.request.method == "GET" and not seen.is_set():
            refused += 1
            await route.fulfill(status=503, json={"error": outage})
        else:
            await route.continue_()

    problems = await open_form(page)
    await page.route(re.compile(r"/api/v1/jobs/[^/?]+$"), status)
    await page.set_input_files(
        "#file",
        files=[upload("photo.jpg", "image/jpeg", photo_like(300, 200, "JPEG"))],
    )
    await page.select_option("#preset", label="Grayscale")
    await page.click("#submit")

    note = page.locator("#job-note")
    await expect(note).to_be_visible()
    await expect(note).to_contain_text("the provenance service is unavailable")
    await expect(page.locator("#form-error")).to_be_hidden()
    await expect(page.locator("#submit")).to_be_disabled()
    seen.set()
    assert refused >= 1

    await wait_for_outcome(page, mesh)
    await expect(note).to_be_hidden()
    await expect(page.locator("#submit")).to_be_enabled()
    job_id = (await page.text_content("#job-id") or "").strip()
    await expect(page.locator("#result-download")).to_have_attribute("download", f"{job_id}.jpg")

    result = await page.request.get(f"/api/v1/jobs/{job_id}/result")
    assert result.status == 200
    with Image.open(io.BytesIO(await result.body())) as decoded:
        assert decoded.size == (300, 200)
        red, green, blue = decoded.convert("RGB").split()
    # Grey: the three channels are the same picture.
    assert ImageChops.difference(red, green).getbbox() is None
    assert ImageChops.difference(green, blue).getbbox() is None
    # The 503s are the browser's own console noise for a refused fetch; nothing else may show.
    assert [m for m in problems.messages if "503" not in m] == []
