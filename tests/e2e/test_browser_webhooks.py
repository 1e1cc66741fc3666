"""The upload form's notify URL (webhook) in Chromium, against the real mesh: what is
typed in the Advanced part is sent as `callback_url` with each image, the receiver
hears each job's end, and the job page's timeline shows the attempt; a URL that is not
http(s) is refused before anything is sent, and one the server refuses (a private
address) is said on the card."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, expect

from tests.browser import JOB_DEADLINE_MS, card, photo_like, upload
from tests.conftest import Mesh
from tests.e2e.test_browser_uploads import open_upload_page
from tests.waiting import async_wait_for
from tests.webhook_receiver import Receiver, receiving

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as found:
        yield found


async def test_the_notify_url_is_sent_with_each_image_and_told_each_end(
    page: Page, mesh: Mesh, receiver: Receiver
) -> None:
    problems = await open_upload_page(page)
    images = [
        upload(f"hooked-{n}.png", "image/png", photo_like(96 + n, 64, "PNG")) for n in range(2)
    ]
    await page.get_by_label("Choose images").set_input_files(images)
    await page.get_by_text("Advanced", exact=True).click()
    await page.get_by_label("Notify URL (webhook)").fill(f"{receiver.url}/hook")
    await page.get_by_role("button", name="Upload and process 2 images").click()
    ids: set[str] = set()
    for n in range(2):
        job = card(page, f"hooked-{n}.png")
        await expect(job).to_have_attribute("data-status", "succeeded", timeout=JOB_DEADLINE_MS)
        ids.add(str(await job.get_attribute("data-job-id")))
    await async_wait_for(
        lambda: len(receiver.received) >= 2, timeout=30, what="both jobs' webhooks"
    )
    told = {json.loads(body)["job"]["id"] for _, body in receiver.received}
    assert told == ids
    assert problems.unexpected() == []

    # The job page's timeline shows the attempt, once provenance has recorded it.
    job_id = sorted(ids)[0]

    async def recorded() -> bool:
        answer = await page.request.get(f"/api/v1/jobs/{job_id}/provenance")
        steps = (await answer.json()).get("activity", {}).values()
        return any(step.get("prov:type") == "webhook.attempted" for step in steps)

    await async_wait_for(recorded, timeout=30, interval=0.5, what="the attempt in provenance")
    await page.goto(f"/jobs/{job_id}")
    step = page.locator('.timeline > li[data-type="webhook.attempted"]')
    await expect(step).to_contain_text("Webhook notified")
    await expect(step).to_contain_text(f"POST {receiver.url}/hook: answered 200, delivered")


async def test_a_notify_url_that_is_not_http_is_refused_before_sending(
    page: Page, mesh: Mesh
) -> None:
    problems = await open_upload_page(page)
    await page.get_by_label("Choose images").set_input_files(
        [upload("nothook.png", "image/png", photo_like(80, 60, "PNG"))]
    )
    await page.get_by_text("Advanced", exact=True).click()
    await page.get_by_label("Notify URL (webhook)").fill("ftp://example.org/hook")
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    await page.get_by_role("button", name="Upload and process 1 image").click()
    await expect(page.locator("#form-error")).to_contain_text("http:// or https://")
    await expect(page.get_by_label("Notify URL (webhook)")).to_be_focused()
    assert not [url for url in sent if url.endswith("/api/v1/jobs")]

    # A private address passes the page's check; the server refuses it, on the card.
    await page.get_by_label("Notify URL (webhook)").fill("http://10.0.0.1/hook")
    await page.get_by_role("button", name="Upload and process 1 image").click()
    refused = card(page, "nothook.png")
    await expect(refused).to_contain_text("Notify URL refused", timeout=JOB_DEADLINE_MS)
    await expect(refused).to_contain_text("private")
    assert problems.unexpected(r"HTTP 400 POST .*/api/v1/jobs$") == []


async def test_the_signing_key_is_shown_on_demand(page: Page, mesh: Mesh) -> None:
    problems = await open_upload_page(page)
    await page.get_by_text("Advanced", exact=True).click()
    await expect(page.locator("#webhook-key")).to_be_hidden()
    await page.get_by_role("button", name="Show my signing key").click()
    shown = page.locator("#webhook-key-text")
    await expect(shown).to_be_visible()
    answer = await (await page.request.get("/api/v1/webhooks/secret")).json()
    assert await shown.text_content() == answer["secret"]
    await expect(page.locator("#webhook-key")).to_contain_text(f"generation {answer['generation']}")
    await expect(page.locator("#webhook-key")).to_contain_text("X-Imagemesh-Signature")
    await expect(page.get_by_role("button", name="Show my signing key")).to_be_hidden()
    assert problems.unexpected() == []


async def test_a_server_without_webhooks_says_so_instead_of_a_key(page: Page, mesh: Mesh) -> None:
    # The shared mesh has webhooks on: its 404 for a server without them (tested against
    # such a server in tests/upload) is played back here, to see what the page makes of it.
    off = {"error": {"code": "webhooks_off", "message": "webhooks are off on this server"}}
    await page.route(
        "**/api/v1/webhooks/secret",
        lambda route: route.fulfill(status=404, json=off),
    )
    problems = await open_upload_page(page)
    await page.get_by_text("Advanced", exact=True).click()
    await page.get_by_role("button", name="Show my signing key").click()
    await expect(page.locator("#webhook-key")).to_contain_text("Webhooks are off on this server")
    await expect(page.locator("#webhook-key-text")).to_have_count(0)
    assert problems.unexpected(r"HTTP 404 GET .*/api/v1/webhooks/secret$") == []
