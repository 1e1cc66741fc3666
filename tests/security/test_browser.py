"""The web app in headless Chromium (tests/browser.py): an XSS filename is shown as text
everywhere, never run; with API tokens on, a person signs in with a token (an encrypted
HttpOnly session cookie), uses the app, and signs out."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, Dialog, Page, expect

from tests.browser import JOB_DEADLINE_MS, PageProblems, card, page_on, photo_like, upload
from tests.conftest import Mesh
from tests.security.conftest import upload_replica
from upload.session import SESSION_COOKIE
from upload.tokens import new_token, token_hash

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

XSS_NAME = "<img src=x onerror=alert(1)>.jpg"


class Dialogs:
    """Every alert/confirm/prompt a page opens (each dismissed at once)."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("dialog", self._opened)

    async def _opened(self, dialog: Dialog) -> None:
        self.seen.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()


async def upload_one(page: Page, name: str) -> str:
    """Send one file through the upload page; returns its job id once it succeeded."""
    await page.goto("/")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await page.get_by_label("Choose images").set_input_files(
        [upload(name, "image/jpeg", photo_like(240, 160, "JPEG"))]
    )
    await page.get_by_role("button", name="Upload and process 1 image").click()
    job = card(page, name)
    await expect(job).to_have_attribute("data-status", "succeeded", timeout=JOB_DEADLINE_MS)
    href = await job.get_by_role("link", name="Details and provenance").get_attribute("href")
    assert href is not None
    match = re.fullmatch(r"/jobs/([0-9a-f-]{36})", href)
    assert match, href
    return match[1]


async def nothing_injected(page: Page) -> None:
    assert await page.locator('img[src="x"]').count() == 0
    assert await page.locator("[onerror]").count() == 0


async def test_an_xss_filename_is_shown_as_text_and_never_runs(
    browser: Browser, mesh: Mesh
) -> None:
    async with page_on(browser, mesh.upload_url) as page:
        dialogs = Dialogs(page)
        problems = PageProblems(page)
        job_id = await upload_one(page, XSS_NAME)
        await expect(card(page, XSS_NAME).locator(".file-name")).to_have_text(XSS_NAME)
        await nothing_injected(page)

        await page.goto(f"/jobs/{job_id}")
        await expect(page.locator("#job-title")).to_have_text(XSS_NAME)
        assert XSS_NAME in await page.title()
        # The provenance timeline names the file as it was given, as text.
        await expect(page.locator("code", has_text=XSS_NAME).first).to_be_visible(
            timeout=JOB_DEADLINE_MS
        )
        await nothing_injected(page)

        await page.goto("/history")
        row = page.locator(f'#history tr[data-job-id="{job_id}"]')
        await expect(row.get_by_role("link", name=XSS_NAME, exact=True)).to_be_visible()
        await nothing_injected(page)
        assert dialogs.seen == []
        assert problems.unexpected() == []


BROWSER_USER = f"browser-{uuid.uuid4().hex[:8]}"
TOKEN = new_token()


@pytest.fixture(scope="module")
def guarded(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """An upload process with API tokens on: the browser signs in with one."""
    with upload_replica(
        mesh,
        tmp_path_factory.mktemp("upload-browser-tokens"),
        UPLOAD_API_TOKEN_HASHES=f"{BROWSER_USER}:{token_hash(TOKEN)}",
    ) as replica:
        yield replica


async def sign_in(page: Page, token: str) -> None:
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


async def test_with_api_tokens_on_a_person_signs_in_uses_the_app_and_signs_out(
    browser: Browser, guarded: Mesh
) -> None:
    async with page_on(browser, guarded.upload_url) as page:
        problems = PageProblems(page)
        posts: list[dict[str, str]] = []
        page.on(
            "request",
            lambda r: posts.append({**r.headers, "url": r.url}) if r.method == "POST" else None,
        )
        # Not signed in: every page sends the browser to the sign-in, and back after it.
        await page.goto("/history")
        await expect(page).to_have_url(re.compile(r"/signin\?next=/history$"))
        await sign_in(page, "not-the-token")
        await expect(page.locator("#sign-in-failed")).to_be_visible()
        await sign_in(page, TOKEN)
        await expect(page).to_have_url(re.compile(r"/history$"))
        await expect(page.locator("#account-name")).to_have_text(BROWSER_USER)
        # The session cookie: encrypted, HttpOnly (scripts never see it), SameSite.
        (cookie,) = [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Lax"
        assert TOKEN not in cookie["value"]
        assert SESSION_COOKIE not in await page.evaluate("document.cookie")

        posts.clear()
        job_id = await upload_one(page, "signed-in.jpg")
        # (The page may retry a post the server asked it to: each is the same.)
        assert posts, "the upload was not posted"
        for post in posts:
            assert post["url"].endswith("/api/v1/jobs"), post
            assert "authorization" not in post
            assert "x-csrf-token" not in post
        # Followed live (EventSource), before/after shown (<img>), all same-origin.
        job = card(page, "signed-in.jpg")
        await expect(job.locator("figure.after img")).to_have_js_property(
            "complete", True, timeout=JOB_DEADLINE_MS
        )
        assert await job.locator("figure.after img").evaluate("(img) => img.naturalWidth") > 0
        await page.goto(f"/jobs/{job_id}")
        await expect(page.locator("#job-title")).to_have_text("signed-in.jpg")
        await page.goto("/history")
        await expect(page.locator(f'#history tr[data-job-id="{job_id}"]')).to_be_visible()
        # The job is this principal's.
        answer = await page.request.get(f"/api/v1/jobs/{job_id}")
        assert (await answer.json())["owner"] == BROWSER_USER

        # Signing out ends the session: back to the sign-in, the API says 401.
        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(re.compile(r"/signin$"))
        assert [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE] == []
        await page.goto(f"/jobs/{job_id}")
        await expect(page).to_have_url(re.compile(r"/signin\?next="))
        answer = await page.request.get(f"/api/v1/jobs/{job_id}")
        assert answer.status == 401
        # Its only 4xx: the wrong token's sign-in is a redirect, not an error.
        assert problems.unexpected() == []
