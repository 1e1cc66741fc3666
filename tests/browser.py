"""Headless Chromium for the browser tests (web app, security, Fauxton), in one place.

Playwright drives Debian's Chromium (``/usr/bin/chromium``): ``playwright install`` cannot
download browsers here. The async API is used because pytest-asyncio runs the tests in one
session-wide event loop, where playwright's sync API refuses to run. The `browser` fixture
(tests/conftest.py) launches one Chromium for the session; each test opens a context of
its own (`page_on`), which shares no cookies or storage with any other."""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from PIL import Image, ImageChops, ImageFilter
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    FilePayload,
    Locator,
    Page,
    Request,
    Response,
    ViewportSize,
    async_playwright,
    expect,
)

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
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = Path(os.environ.get("IMAGEMESH_ARTIFACTS", str(ROOT / ".artifacts"))) / "screenshots"
JOB_DEADLINE_MS = 60_000
UI_DEADLINE_MS = 10_000
DESKTOP: ViewportSize = {"width": 1100, "height": 900}
PHONE: ViewportSize = {"width": 375, "height": 812}


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Chromium, closed afterwards. `launch` gives it a fresh temporary profile
    (--user-data-dir) of its own and removes it on close."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@contextlib.asynccontextmanager
async def page_on(
    browser: Browser, base_url: str, viewport: ViewportSize = DESKTOP
) -> AsyncIterator[Page]:
    """A page in a context of its own (no cookies, storage or login of another test),
    relative URLs against `base_url`, UI waits bounded; the context closed afterwards."""
    context = await browser.new_context(base_url=base_url, viewport=viewport, accept_downloads=True)
    context.set_default_timeout(UI_DEADLINE_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


class PageProblems:
    """Uncaught exceptions, console errors and failed or refused requests seen by a page."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.messages.append(f"uncaught: {exc}"))
        page.on("response", self._response)
        page.on("requestfailed", self._failed)

    def _console(self, message: ConsoleMessage) -> None:
        # Chromium logs every HTTP error as "Failed to load resource" without the URL;
        # `_response` records those with their URL instead. A CSP violation is an error.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.messages.append(f"console: {message.text}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.messages.append(f"HTTP {response.status} {response.request.method} {response.url}")

    def _failed(self, request: Request) -> None:
        # A download navigates nowhere and an EventSource closed by the page is aborted
        # on purpose: neither is a problem.
        if request.failure != "net::ERR_ABORTED":
            self.messages.append(f"request failed: {request.url} ({request.failure})")

    def unexpected(self, *allowed: str) -> list[str]:
        """Problems other than those matching one of `allowed` (regular expressions)."""
        return [m for m in self.messages if not any(re.search(a, m) for a in allowed)]


async def screenshot(page: Page, name: str) -> Path:
    """The full page, under $IMAGEMESH_ARTIFACTS/screenshots (CI keeps them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def card(page: Page, filename: str, *, where: str = "#jobs") -> Locator:
    """A file's card: in the job list once sent (or `#selected`, refused before sending)."""
    return page.locator(f"{where} > li.card").filter(
        has=page.locator(".file-name", has_text=re.compile(rf"^{re.escape(filename)}$"))
    )


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


def answer_next_dialog(page: Page, *, accept: bool) -> list[str]:
    """Answer the page's next dialog (a `confirm()`): accept or dismiss it. The list
    returned gets its message, for the test to assert what was asked."""
    asked: list[str] = []

    async def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await (dialog.accept() if accept else dialog.dismiss())

    page.once("dialog", answer)
    return asked


def upload(name: str, mime_type: str, data: bytes) -> FilePayload:
    """A file for `set_input_files`, as if picked from disk."""
    return {"name": name, "mimeType": mime_type, "buffer": data}


async def images_loaded(scope: Locator) -> None:
    """Every image in `scope` finished loading and decoded to a real picture (a lazy one
    is brought into view first: the browser loads it only then)."""
    images = scope.locator("img")
    for index in range(await images.count()):
        image = images.nth(index)
        if await image.get_attribute("loading") == "lazy":
            await image.scroll_into_view_if_needed()
        await expect(image).to_have_js_property("complete", True, timeout=JOB_DEADLINE_MS)
        width = await image.evaluate("(img) => img.naturalWidth")
        assert width > 0, await image.get_attribute("src")
