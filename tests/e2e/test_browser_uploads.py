"""The upload page's flow in Chromium, against the four services as real processes: the
live steps of each job, the results brought into view with the overall progress, and the
checks each file gets before it is sent (tests/browser.py, tests/e2e/test_browser.py)."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path
from typing import Any

import pytest
import pyvips
from PIL import Image
from playwright.async_api import Page, expect

from tests.browser import JOB_DEADLINE_MS, PageProblems, card, photo_like, upload
from tests.conftest import Mesh
from tests.waiting import async_wait_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

DITHERED_THUMBNAIL: list[dict[str, Any]] = [
    {"op": "thumbnail", "width": 200},
    {"op": "dither"},
]  # floyd-steinberg


async def open_upload_page(page: Page) -> PageProblems:
    problems = PageProblems(page)
    response = await page.goto("/")
    assert response is not None
    assert response.ok
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return problems


async def use_pipeline(page: Page, pipeline: list[dict[str, Any]]) -> None:
    """Steps added in the builder, one by one, with their parameters."""
    for step in pipeline:
        await page.get_by_label("Operation to add").select_option(step["op"])
        await page.get_by_role("button", name="Add", exact=True).click()
        added = page.locator(f'#ops > li.op[data-op="{step["op"]}"]').last
        for name, value in step.items():
            if name == "op":
                continue
            field = added.locator(f"[data-param={name}]").locator("input, select")
            if await field.evaluate("(element) => element.tagName") == "SELECT":
                await field.select_option(value=str(value))
            else:
                await field.fill(str(value))


def photos(count: int) -> list[Any]:
    return [
        upload(f"photo-{n}.jpg", "image/jpeg", photo_like(640 + 8 * n, 480, "JPEG"))
        for n in range(count)
    ]


async def test_the_live_steps_are_every_step_of_the_job_as_the_job_page_lists_them(
    page: Page, mesh: Mesh
) -> None:
    # Three photos at once: the fast jobs end before (or while) their stream opens.
    problems = await open_upload_page(page)
    await page.get_by_label("Choose images").set_input_files(photos(3))
    await use_pipeline(page, DITHERED_THUMBNAIL)
    await page.get_by_role("button", name="Upload and process 3 images").click()
    for n in range(3):
        job = card(page, f"photo-{n}.jpg")
        await expect(job).to_have_attribute("data-status", "succeeded", timeout=JOB_DEADLINE_MS)
        job_id = await job.get_attribute("data-job-id")

        async def recorded(job_id: str | None = job_id) -> dict[str, Any] | None:
            # Every step of the job: each event, and each operation image.processed lists
            # (upload.received, image.uploaded, processing-started, 2 operations,
            # processed). The stream may say succeeded before provenance has recorded its
            # last step (it follows the live events): wait for it.
            answer = await page.request.get(f"/api/v1/jobs/{job_id}/provenance")
            found: dict[str, Any] = (await answer.json()).get("activity") or {}
            return found if len(found) == 6 else None

        activities = await async_wait_for(recorded, timeout=20, what="the job's recorded steps")
        summary = job.locator(".steps-box summary")
        await expect(summary).to_have_text(f"Steps ({len(activities)})")
        live = await job.locator(".steps-log > li").evaluate_all(
            "(items) => items.map((item) => item.dataset.type)"
        )
        assert sorted(live) == sorted(a["prov:type"] for a in activities.values()), live
        assert live[:3] == ["upload.received", "image.uploaded", "job.processing-started"]
        assert live[-1] == "image.processed"
    # The same list, in the same order, as the job page's timeline.
    job_id = await card(page, "photo-0.jpg").get_attribute("data-job-id")
    live = (
        await card(page, "photo-0.jpg")
        .locator(".steps-log > li")
        .evaluate_all(
            "(items) => items.map((li) => [li.dataset.type, li.querySelector('.who').textContent])"
        )
    )
    await page.goto(f"/jobs/{job_id}")
    timeline = page.locator("#timeline ol.timeline > li")
    await expect(timeline).to_have_count(6)
    recorded = await timeline.evaluate_all(
        "(items) => items.map((item) => [item.dataset.type, item.dataset.service])"
    )
    assert recorded == live
    assert problems.unexpected() == []


async def test_after_upload_the_jobs_are_in_view_with_the_overall_progress(
    phone: Page, mesh: Mesh
) -> None:
    problems = await open_upload_page(phone)
    await phone.get_by_label("Choose images").set_input_files(photos(3))
    await use_pipeline(phone, [{"op": "thumbnail", "width": 100}])
    await phone.get_by_role("button", name="Upload and process 3 images").click()
    # The focus moves to the jobs (the button stays far above them on a phone), in view.
    jobs_title = phone.locator("#jobs-title")
    await expect(jobs_title).to_be_focused()
    await expect(jobs_title).to_be_in_viewport()
    # The overall progress, said politely to screen readers as it changes.
    overall = phone.locator("#jobs-progress")
    await expect(overall).to_have_attribute("aria-live", "polite")
    await expect(overall).to_have_text(re.compile(r"^[0-3] of 3 done"))
    await expect(overall).to_have_text("3 of 3 done", timeout=JOB_DEADLINE_MS)
    for n in range(3):
        await expect(card(phone, f"photo-{n}.jpg")).to_have_attribute("data-status", "succeeded")
    assert problems.unexpected() == []


# --------------------------------------------------------------------------- checks


def patched(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value) :]


def encoded(fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 120, 40)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def wide_jpeg(width: int, height: int) -> bytes:
    """A small JPEG whose SOF (after an EXIF segment of 20 kB) claims width x height."""
    exif = b"\xff\xe1" + struct.pack(">H", 20_002) + b"Exif\0\0" + b"\0" * 19_994
    data = encoded("JPEG")
    data = data[:2] + exif + data[2:]
    sof = data.index(b"\xff\xc0")
    return patched(data, sof + 5, struct.pack(">HH", height, width))


def png_header(width: int, height: int) -> bytes:
    """A PNG cut short after its IHDR: the header says width x height."""
    return encoded("PNG")[:16] + struct.pack(">II", width, height) + b"\x08\x02\0\0\0"


def webp_vp8x(width: int, height: int) -> bytes:
    data = encoded("WEBP", lossless=True, exact=True)
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x10\0\0\0"
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(data) - 8 + 18) + b"WEBP" + vp8x + canvas + data[12:]


def webp_lossy(width: int, height: int) -> bytes:
    data = encoded("WEBP", quality=80)
    assert data[12:16] == b"VP8 "
    return patched(data, 26, struct.pack("<HH", width, height))


def webp_lossless(width: int, height: int) -> bytes:
    data = encoded("WEBP", lossless=True)
    assert data[12:16] == b"VP8L"
    bits = (width - 1) | ((height - 1) << 14) | (data[24] >> 4 << 28)
    return patched(data, 21, struct.pack("<I", bits))


def avif(width: int, height: int) -> bytes:
    """A small AVIF whose image extents (ispe) claim width x height."""
    data = bytes(pyvips.Image.black(16, 16).heifsave_buffer(compression="av1"))
    at = data.index(b"ispe")
    return patched(data, at + 8, struct.pack(">II", width, height))


def gif(width: int, height: int) -> bytes:
    return patched(encoded("GIF"), 6, struct.pack("<HH", width, height))


async def limits_of(page: Page) -> dict[str, int]:
    answer = await page.request.get("/api/v1/about")
    limits: dict[str, int] = (await answer.json())["limits"]
    return limits


async def test_each_file_is_checked_before_upload_and_told_why_next_to_it(
    page: Page, tmp_path: Path
) -> None:
    problems = await open_upload_page(page)
    limits = await limits_of(page)
    side, pixels = limits["image_max_side"], limits["image_max_pixels"]
    huge = tmp_path / "huge.jpg"  # a path, not a buffer: Playwright then streams nothing
    with huge.open("wb") as out:
        out.write(b"\xff\xd8\xff")
        out.truncate(limits["image_max_bytes"] + 1)
    files = [
        upload("empty.png", "image/png", b""),
        upload("notes.jpg", "image/jpeg", b"Not an image, whatever its name says.\n" * 20),
        upload("wide.jpg", "image/jpeg", wide_jpeg(side + 10_000, 1000)),
        upload("bomb.png", "image/png", png_header(20_000, 20_000)),
        upload("canvas.webp", "image/webp", webp_vp8x(16_000, 16_000)),
        upload("lossy.webp", "image/webp", webp_lossy(16_000, 8000)),
        upload("lossless.webp", "image/webp", webp_lossless(12_000, 6000)),
        upload("anim.gif", "image/gif", gif(10_000, 8000)),
        upload("photo.avif", "image/avif", avif(9000, 7000)),
        upload("fine.jpg", "image/jpeg", photo_like(320, 200, "JPEG")),
    ]
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    await page.get_by_label("Choose images").set_input_files(files)
    await page.get_by_label("Choose images").set_input_files([huge])
    mp = f"at most {pixels / 1e6:g} MP"
    expected = {
        "empty.png": "The file is empty",
        "notes.jpg": "Not an image type we accept: the file's content is none of "
        "JPEG, PNG, WebP, GIF, TIFF, AVIF, BMP, ICO/CUR, PNM, QOI, JPEG 2000, HEIF/HEIC",
        "wide.jpg": f"Too wide or too tall: {side + 10_000:,} \u00d7 1,000 pixels; "
        f"each side at most {side:,}",
        "bomb.png": f"Too many pixels: 400 MP; {mp}",
        "canvas.webp": f"Too many pixels: 256 MP; {mp}",
        "lossy.webp": f"Too many pixels: 128 MP; {mp}",
        "lossless.webp": f"Too many pixels: 72 MP; {mp}",
        "anim.gif": f"Too many pixels: 80 MP; {mp}",
        "photo.avif": f"Too many pixels: 63 MP; {mp}",
        "huge.jpg": f"Too large: {limits['image_max_bytes'] + 1:,} bytes; "
        f"at most {limits['image_max_bytes']:,} bytes",
    }
    for name, message in expected.items():
        chosen = card(page, name, where="#selected")
        await expect(chosen).to_have_attribute("data-status", "refused")
        await expect(chosen.locator(".status-line")).to_have_text(message)
        await expect(chosen.locator(".badge")).to_have_text("Refused")
        # Said once: the card holds the message once and no other problem text.
        assert (await chosen.inner_text()).count(message.split(":")[0]) == 1, name
    await expect(card(page, "fine.jpg", where="#selected")).to_have_attribute(
        "data-status", "ready"
    )
    await expect(page.get_by_role("button", name="Upload and process 1 image")).to_be_visible()
    # Said to screen readers once, for the files added together.
    await expect(page.locator("#announcer")).to_have_text(
        f"1 image added, 1 ready to upload. huge.jpg: {expected['huge.jpg']}"
    )
    assert posts == []
    assert problems.unexpected() == []


async def test_a_huge_image_gets_no_preview_decoded_in_the_browser(page: Page, mesh: Mesh) -> None:
    problems = await open_upload_page(page)
    # 45 MP of one colour: within the server's limit, past the preview's; and 400 MP.
    large = pyvips.Image.black(7500, 6000).pngsave_buffer(compression=9, bitdepth=1)
    await page.get_by_label("Choose images").set_input_files(
        [
            upload("large.png", "image/png", large),
            upload("bomb.png", "image/png", png_header(20_000, 20_000)),
            upload("small.jpg", "image/jpeg", photo_like(320, 200, "JPEG")),
        ]
    )
    small = card(page, "small.jpg", where="#selected")
    await expect(small.locator("img.thumb")).to_have_attribute("src", re.compile(r"^blob:"))
    await expect(small.locator("img.thumb")).to_have_js_property("naturalWidth", 320)
    for name, size in (("large.png", "7500 \u00d7 6000"), ("bomb.png", "20000 \u00d7 20000")):
        chosen = card(page, name, where="#selected")
        # Its size from the header, and no image decoded for a preview.
        await expect(chosen.locator(".card-title .hint")).to_contain_text(size)
        await expect(chosen.locator(".thumb-none")).to_be_visible()
        await expect(chosen.locator("img")).to_have_count(0)
    await expect(card(page, "large.png", where="#selected")).to_have_attribute(
        "data-status", "ready"
    )
    assert problems.unexpected() == []


async def test_a_corrupt_image_says_decoding_it_failed(page: Page, mesh: Mesh) -> None:
    problems = await open_upload_page(page)
    jpeg = photo_like(640, 480, "JPEG")
    await page.get_by_label("Choose images").set_input_files(
        [upload("cut.jpg", "image/jpeg", jpeg[: len(jpeg) // 2])]
    )
    await use_pipeline(page, [{"op": "convert", "format": "webp"}])
    await page.get_by_role("button", name="Upload and process 1 image").click()
    job = card(page, "cut.jpg")
    await expect(job).to_have_attribute("data-status", "failed", timeout=JOB_DEADLINE_MS)
    # What failed is decoding the input, not the WebP encoder that first read its pixels.
    await expect(job.locator(".status-line")).to_have_text(
        "The image cannot be read: the input image cannot be decoded: "
        "its data is corrupt or truncated"
    )
    assert problems.unexpected() == []
