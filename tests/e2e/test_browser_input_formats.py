"""The web app takes the input-only formats: a BMP and a PPM chosen in the browser pass
its precheck (their sizes left to the server), are sent, and become images."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser import JOB_DEADLINE_MS, card, upload
from tests.conftest import Mesh
from tests.e2e.test_browser_uploads import open_upload_page
from tests.extended_images import extended_image

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


async def test_a_bmp_and_a_ppm_are_sent_and_processed(page: Page, mesh: Mesh) -> None:
    problems = await open_upload_page(page)
    await page.get_by_label("Choose images").set_input_files(
        [
            upload("scan.bmp", "image/bmp", extended_image("bmp")),
            upload("frame.ppm", "image/x-portable-pixmap", extended_image("ppm")),
        ]
    )
    for name in ("scan.bmp", "frame.ppm"):
        await expect(card(page, name, where="#selected")).to_have_attribute("data-status", "ready")
    await page.get_by_role("button", name="Upload and process 2 images").click()
    for name in ("scan.bmp", "frame.ppm"):
        await expect(card(page, name)).to_have_attribute(
            "data-status", "succeeded", timeout=JOB_DEADLINE_MS
        )
    assert problems.unexpected() == []
