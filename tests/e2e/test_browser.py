"""The web app in a real headless Chromium (tests/browser.py), against the four services
as real processes.

The pages run under the service's Content-Security-Policy, which forbids `eval`: waits are
Playwright expectations on locators (never `wait_for_function` with a string predicate).
Each page's full-page screenshot is saved under ``$IMAGEMESH_ARTIFACTS/screenshots``."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pyvips
from playwright.async_api import Locator, Page, Route, expect

from tests.browser import (
    JOB_DEADLINE_MS,
    PageProblems,
    card,
    images_loaded,
    photo_like,
    screenshot,
    upload,
)
from tests.conftest import Mesh
from tests.e2e.helpers import decode, submit, wait_finished

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SERVICE_AND_VERSION = re.compile(r"^(upload|imageproc_runner|imageproc) \d+\.\d+\S*$")


# --------------------------------------------------------------------------- browser


async def open_page(page: Page, path: str) -> PageProblems:
    problems = PageProblems(page)
    response = await page.goto(path)
    assert response is not None
    assert response.ok, f"{path}: HTTP {response.status}"
    return problems


async def open_upload_page(page: Page) -> PageProblems:
    problems = await open_page(page, "/")
    # The catalogue is loaded and the builder drawn: uploads.js has run.
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return problems


async def no_horizontal_scroll(page: Page) -> None:
    widths = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"{page.url}: content {widths[0]} px wide in {widths[1]} px"


# --------------------------------------------------------------------------- the builder


async def add_operation(page: Page, name: str) -> Locator:
    await page.get_by_label("Operation to add").select_option(name)
    await page.get_by_role("button", name="Add", exact=True).click()
    return page.locator(f'#ops > li.op[data-op="{name}"]').last


async def pipeline_json(page: Page) -> Any:
    return json.loads(await page.get_by_label("Pipeline JSON").input_value())


async def wait_for_status(job_card: Locator, mesh: Mesh, status: str = "succeeded") -> None:
    """Wait until a job card shows `status`; on time-out say what the card and the services
    were saying, since a stuck "queued" alone explains nothing."""
    try:
        await expect(job_card).to_have_attribute("data-status", status, timeout=JOB_DEADLINE_MS)
    except AssertionError as exc:
        logs = "\n".join(
            f"--- {name} ---\n"
            + "\n".join(line[:300] for line in mesh.log_tail(name, lines=6).splitlines())
            for name in mesh.processes
        )
        raise AssertionError(
            f"{exc}\nthe card says: {await job_card.inner_text()}\n{logs}"
        ) from None


# --------------------------------------------------------------------------- the API


async def finished_job(
    http: aiohttp.ClientSession, mesh: Mesh, data: bytes, pipeline: str, filename: str
) -> dict[str, Any]:
    response = await submit(http, mesh.upload_url, data, pipeline, filename=filename)
    assert response.status == 202, await response.text()
    accepted = await response.json()
    return await wait_finished(http, mesh.upload_url, accepted["id"])


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


# --------------------------------------------------------------------------- tests


async def test_two_images_at_once_with_a_built_pipeline_followed_live_to_download(
    page: Page, mesh: Mesh
) -> None:
    problems = await open_upload_page(page)
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if r.url.endswith("/events") else None)

    await page.get_by_label("Choose images").set_input_files(
        [
            upload("photo.jpg", "image/jpeg", photo_like(1200, 800, "JPEG")),
            upload("drawing.png", "image/png", photo_like(600, 400, "PNG")),
        ]
    )
    chosen = page.locator("#selected > li.card")
    await expect(chosen).to_have_count(2)
    # A preview of each file before upload, from an object URL.
    for index in range(2):
        await expect(chosen.nth(index).locator("img.thumb")).to_have_attribute(
            "src", re.compile(r"^blob:")
        )
    await images_loaded(page.locator("#selected"))

    thumbnail = await add_operation(page, "thumbnail")
    await thumbnail.get_by_label("Width").fill("200")
    await add_operation(page, "grayscale")
    assert await pipeline_json(page) == [{"op": "thumbnail", "width": 200}, {"op": "grayscale"}]

    await page.get_by_role("button", name="Upload and process 2 images").click()
    await expect(page.locator("#selected > li")).to_have_count(0)
    for name, before in (("photo.jpg", (1200, 800)), ("drawing.png", (600, 400))):
        job = card(page, name)
        await wait_for_status(job, mesh)
        height = round(before[1] * 200 / before[0])
        await expect(job.locator(".badge")).to_have_text("Done")
        await expect(job.locator(".status-line")).to_have_text(re.compile(r"^Done in \d"))
        await expect(job.locator(".chip-step[data-state=done]")).to_have_count(2)
        # Seen live, the result's step lists each operation applied just before it (as
        # the job page's timeline does), from image.processed's list of operations.
        log = await job.locator(".steps-log li .what").all_inner_texts()
        if "Finished: result ready" in log:
            applied = log[: log.index("Finished: result ready")]
            assert [text for text in applied if text.startswith("Applied")] == [
                "Applied thumbnail (step 1)",
                "Applied grayscale (step 2)",
            ], log
        await expect(job.locator("figure.before")).to_have_attribute("data-width", str(before[0]))
        await expect(job.locator("figure.before")).to_have_attribute("data-height", str(before[1]))
        await expect(job.locator("figure.after")).to_have_attribute("data-width", "200")
        await expect(job.locator("figure.after")).to_have_attribute("data-height", str(height))
        await expect(job.locator(".cmp-caption.after")).to_contain_text(f"200 \u00d7 {height}")
        await expect(job.locator(".cmp-caption.after")).to_contain_text(re.compile(r"KiB|bytes"))
        await images_loaded(job)
    # Both were followed live, over server-sent events.
    assert len(streams) >= 2, streams

    photo = card(page, "photo.jpg")
    link = photo.get_by_role("link", name=re.compile(r"^Download JPEG"))
    async with page.expect_download() as caught:
        await link.click()
    download = await caught.value
    assert download.suggested_filename == "photo-imagemesh.jpg"
    data = await asyncio.to_thread(Path(await download.path()).read_bytes)
    assert await photo.locator("figure.after").get_attribute("data-bytes") == str(len(data))
    image = decode(data)
    assert image.format == "JPEG"
    assert image.size == (200, 133)
    assert image.mode == "L"

    drawing = card(page, "drawing.png")
    result = await page.request.get(
        await drawing.get_by_role("link", name=re.compile(r"^Download PNG")).get_attribute("href")
        or ""
    )
    assert result.status == 200
    image = decode(await result.body())
    assert (image.format, image.size) == ("PNG", (200, 133))

    await screenshot(page, "upload-results")
    assert problems.unexpected() == []


async def test_refused_files_say_why_naming_the_limit(
    page: Page, mesh: Mesh, tmp_path: Path
) -> None:
    limit = int(mesh.env.get("IMAGE_MAX_BYTES", 25 * 1024 * 1024))
    not_an_image = tmp_path / "holiday.jpg"
    not_an_image.write_bytes(b"This is not an image, whatever its name says.\n" * 20)
    # 100 megapixels of one colour compress to a few kB; the header alone gives it away.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(pyvips.Image.black(10_000, 10_000).pngsave_buffer(compression=9, bitdepth=1))
    # A TIFF's size is left to the server: sent, and refused there.
    tiff = tmp_path / "scan.tif"
    tiff.write_bytes(
        pyvips.Image.black(10_000, 10_000).tiffsave_buffer(
            compression="deflate", bitdepth=1, predictor="none"
        )
    )
    huge = tmp_path / "huge.jpg"  # a path, not a buffer: Playwright then streams nothing
    with huge.open("wb") as out:
        out.write(b"\xff\xd8\xff")
        out.truncate(limit + 1)

    problems = await open_upload_page(page)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    await page.get_by_label("Choose images").set_input_files([not_an_image, bomb, tiff, huge])
    # The limits come from /api/v1/about: what the browser can tell is refused before it
    # is sent (tests/e2e/test_browser_uploads.py has every check).
    await page.get_by_role("button", name="Upload and process 1 image").click()

    expected = {
        "holiday.jpg": ("Not an image type we accept", "JPEG, PNG, WebP, GIF, TIFF, AVIF"),
        "bomb.png": ("Too many pixels", "at most 50 MP"),
        "scan.tif": ("Too many pixels", "at most 50,000,000 pixels (50 MP)"),
        "huge.jpg": ("Too large", f"at most {limit:,} bytes"),
    }
    for name, (headline, limit_words) in expected.items():
        refused = card(page, name, where="#jobs" if name == "scan.tif" else "#selected")
        await expect(refused).to_have_attribute("data-status", "refused")
        line = refused.locator(".status-line")
        await expect(line).to_contain_text(headline)
        await expect(line).to_contain_text(limit_words)
        await expect(refused.locator(".badge")).to_have_text("Refused")
        # A refusal is final: nothing to retry.
        await expect(refused.get_by_role("button", name="Try again")).to_have_count(0)
    assert problems.unexpected(r"HTTP 422 POST .*/api/v1/jobs$") == []
    assert len(posts) == 1


async def test_the_builder_catches_invalid_parameters_before_anything_is_sent(page: Page) -> None:
    problems = await open_upload_page(page)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    await page.get_by_label("Choose images").set_input_files(
        [upload("photo.jpg", "image/jpeg", photo_like(320, 200, "JPEG"))]
    )
    submit_button = page.get_by_role("button", name="Upload and process 1 image")
    summary = page.locator("#pipeline-errors")

    thumbnail = await add_operation(page, "thumbnail")
    width = thumbnail.get_by_label("Width")
    await width.fill("20000")
    await submit_button.click()
    await expect(summary).to_be_visible()
    await expect(summary).to_contain_text("Step 1 (thumbnail), Width: must be at most 10000")
    await expect(width).to_have_attribute("aria-invalid", "true")
    await expect(thumbnail.locator("[data-param=width] .field-error")).to_have_text(
        "must be at most 10000"
    )
    await expect(summary).to_be_focused()

    # Rules across parameters come from the JSON Schema too, and are re-checked as you type.
    await width.fill("")
    await expect(summary).to_contain_text("Width: give width, height or both")
    # Crop applies with fit "cover" only, and is shown then; kept when fit changes, it is reported.
    await thumbnail.get_by_label("Fit").select_option("cover")
    await thumbnail.get_by_label("Crop").select_option("attention")
    await thumbnail.get_by_label("Fit").select_option(label="inside (default)")
    await expect(summary).to_contain_text("Crop: only works when fit is \u201ccover\u201d")
    await thumbnail.get_by_label("Fit").select_option("cover")
    await expect(summary).to_contain_text("Height: is required when fit is \u201ccover\u201d")
    await width.fill("300")
    await thumbnail.get_by_label("Height").fill("200")
    await expect(summary).to_be_hidden()
    await expect(width).not_to_have_attribute("aria-invalid", "true")
    assert await pipeline_json(page) == [
        {"op": "thumbnail", "width": 300, "height": 200, "fit": "cover", "crop": "attention"}
    ]

    # Reorder with the keyboard: the focus stays on the step that moved.
    await add_operation(page, "grayscale")
    await page.get_by_role("button", name="Move step 2 (grayscale) up").focus()
    await page.keyboard.press("Enter")
    assert [step["op"] for step in await pipeline_json(page)] == ["grayscale", "thumbnail"]
    await expect(page.get_by_role("button", name="Move step 1 (grayscale) down")).to_be_focused()
    await page.keyboard.press("Enter")
    assert [step["op"] for step in await pipeline_json(page)] == ["thumbnail", "grayscale"]
    await page.get_by_role("button", name="Remove step 2 (grayscale)").click()
    await expect(page.locator("#ops > li")).to_have_count(1)

    presets = {
        "Web thumbnail": [{"op": "thumbnail", "width": 256, "height": 256}],
        "Dither like the original": [{"op": "dither", "method": "floyd-steinberg"}],
        "AVIF for the web": [
            {"op": "thumbnail", "width": 1600, "height": 1600},
            {"op": "convert", "format": "avif"},
        ],
    }
    for name, expected in presets.items():
        await page.get_by_role("button", name=name).click()
        assert await pipeline_json(page) == expected, name

    # The advanced JSON view loads into the builder, which checks it like any other input.
    await page.get_by_text("Pipeline as JSON (advanced)").click()
    editor = page.get_by_label("Pipeline JSON")
    await editor.fill("[{")
    await page.get_by_role("button", name="Use this JSON").click()
    await expect(page.locator(".json-view .field-error")).to_contain_text("not valid JSON")
    await editor.fill('[{"op": "blur", "sigma": 0}]')
    await page.get_by_role("button", name="Use this JSON").click()
    await expect(page.locator("#ops > li[data-op=blur]")).to_have_count(1)
    await submit_button.click()
    await expect(summary).to_contain_text("Step 1 (blur), Sigma: must be at least 0.1")

    assert posts == []
    await expect(page.locator("#selected > li.card")).to_have_attribute("data-status", "ready")
    assert problems.unexpected() == []


async def test_history_lists_pages_and_filters_jobs_by_status(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    # More jobs than a page holds, then one that succeeds and one that fails: the newest.
    tiny = photo_like(16, 16, "PNG")
    for index in range(21):
        response = await submit(http, mesh.upload_url, tiny, "[]", filename=f"tiny-{index}.png")
        assert response.status == 202, await response.text()
    good = await finished_job(
        http, mesh, photo_like(300, 200, "JPEG"), '[{"op": "thumbnail", "width": 100}]', "good.jpg"
    )
    crop_outside = '[{"op": "crop", "x": 5000, "y": 0, "width": 10, "height": 10}]'
    bad = await finished_job(http, mesh, photo_like(100, 100, "JPEG"), crop_outside, "bad.jpg")
    assert (good["status"], bad["status"]) == ("succeeded", "failed")

    problems = await open_page(page, "/history")
    rows = page.locator("#history tbody tr")
    await expect(rows).to_have_count(20)
    good_row = page.locator(f'#history tr[data-job-id="{good["id"]}"]')
    bad_row = page.locator(f'#history tr[data-job-id="{bad["id"]}"]')
    await expect(good_row.locator(".badge")).to_have_text("Done")
    await expect(good_row).to_contain_text("good.jpg")
    await expect(good_row).to_contain_text("thumbnail")
    await expect(good_row).to_contain_text("300 \u00d7 200 \u2192 100 \u00d7 67")
    await expect(bad_row.locator(".badge")).to_have_text("Failed")
    await expect(bad_row).to_contain_text("A parameter does not fit this image")
    await images_loaded(page.locator("#history"))
    await screenshot(page, "history")

    first_page = set(await rows.evaluate_all("(rows) => rows.map((r) => r.dataset.jobId)"))
    await page.get_by_role("button", name="Older").click()
    await expect(good_row).to_have_count(0)
    await expect(rows.first).to_be_visible()
    second_page = set(await rows.evaluate_all("(rows) => rows.map((r) => r.dataset.jobId)"))
    assert second_page
    assert not second_page & first_page
    await page.get_by_role("button", name="Newer").click()
    await expect(good_row).to_be_visible()

    status = page.get_by_label("Status")
    await status.select_option("failed")
    await expect(bad_row).to_be_visible()
    await expect(good_row).to_have_count(0)
    await expect(page.locator("#history tbody tr:not([data-status=failed])")).to_have_count(0)
    await expect(page).to_have_url(re.compile(r"/history\?status=failed$"))
    await status.select_option("succeeded")
    await expect(good_row).to_be_visible()
    await expect(bad_row).to_have_count(0)
    await expect(page.locator("#history tbody tr:not([data-status=succeeded])")).to_have_count(0)

    await good_row.get_by_role("link", name="good.jpg").click()
    await expect(page).to_have_url(re.compile(rf"/jobs/{good['id']}$"))
    await expect(page.locator("#job-title")).to_have_text("good.jpg")
    assert problems.unexpected() == []


async def test_the_job_page_shows_every_step_with_its_service_and_the_lineage(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    pipeline = '[{"op": "thumbnail", "width": 320}, {"op": "grayscale"}]'
    first = await finished_job(http, mesh, photo_like(640, 480, "JPEG"), pipeline, "portrait.jpg")
    assert first["status"] == "succeeded", first
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{first['id']}/result") as response:
        output = await response.read()
    # Its output uploaded again: the second job's input is the first one's output.
    second = await finished_job(http, mesh, output, '[{"op": "flip"}]', "portrait-again.jpg")
    assert second["status"] == "succeeded", second
    provenance = await get_json(http, f"{mesh.upload_url}/api/v1/jobs/{first['id']}/provenance")

    problems = await open_page(page, f"/jobs/{first['id']}")
    await expect(page.locator("#job-title")).to_have_text("portrait.jpg")
    await expect(page.locator("#job-badge .badge")).to_have_text("Done")
    await expect(page.locator("#job-live")).to_have_text(re.compile(r"^Done in \d"))
    await expect(page.locator("figure.before")).to_have_attribute("data-width", "640")
    await expect(page.locator("figure.after")).to_have_attribute("data-width", "320")
    await expect(page.locator("figure.before img")).to_have_js_property("naturalWidth", 640)
    await expect(page.locator("figure.after img")).to_have_js_property("naturalWidth", 320)
    await expect(page.get_by_role("link", name=re.compile(r"^Download JPEG"))).to_have_attribute(
        "download", "portrait-imagemesh.jpg"
    )

    # The timeline: every activity of the PROV document, in order, each with its service.
    steps = page.locator("#timeline ol.timeline > li")
    activities = provenance["activity"]
    await expect(steps).to_have_count(len(activities))
    types = await steps.evaluate_all("(items) => items.map((item) => item.dataset.type)")
    assert sorted(types) == sorted(a["prov:type"] for a in activities.values())
    assert types[0] == "upload.received"
    assert types[-1] == "image.processed"
    assert types.count("operation.applied") == 2
    agents = await steps.locator(".tl-agent").all_inner_texts()
    assert len(agents) == len(activities)
    assert all(SERVICE_AND_VERSION.match(agent) for agent in agents), agents
    applied = steps.filter(has=page.locator(".tl-title", has_text="Applied"))
    await expect(applied.nth(0)).to_contain_text("Applied thumbnail (step 1)")
    await expect(applied.nth(0)).to_contain_text('"width":320')
    await expect(applied.nth(1)).to_contain_text("Applied grayscale (step 2)")

    # The lineage: the output led to the second job; the input was used by this one.
    output_card = page.locator(f'.lineage-card[data-sha256="{first["output"]["sha256"]}"]')
    await expect(output_card.locator(f'.led-to a[href="/jobs/{second["id"]}"]')).to_be_visible()
    await expect(output_card.locator(f'.made-by a[href="/jobs/{first["id"]}"]')).to_be_visible()
    input_card = page.locator(f'.lineage-card[data-sha256="{first["input"]["sha256"]}"]')
    await expect(input_card.locator(".came-from")).to_have_text(
        "Uploaded: no job here made this image."
    )
    await expect(input_card.locator(".used-by li", has_text="(this job)")).to_have_count(1)

    # The consoles: this job's view, the queues (on which host: test_browser_job.py).
    fauxton = page.get_by_role("link", name="Provenance documents in Fauxton")
    await expect(fauxton).to_have_attribute("href", re.compile(r"/_view/by_job\?"))
    rabbitmq = page.get_by_role("link", name=re.compile(r"^RabbitMQ console"))
    await expect(rabbitmq).to_have_attribute("href", re.compile(r"/#/queues$"))
    await images_loaded(page.locator("#job-result"))
    await screenshot(page, "job")

    # Following the lineage: the second job's input came from the first job.
    await output_card.locator(f'.led-to a[href="/jobs/{second["id"]}"]').click()
    await expect(page.locator("#job-title")).to_have_text("portrait-again.jpg")
    came_from = page.locator(f'.lineage-card[data-sha256="{second["input"]["sha256"]}"]')
    await expect(came_from.locator(f'.came-from a[href="/jobs/{first["id"]}"]')).to_be_visible()
    assert problems.unexpected() == []


async def test_a_failed_job_and_an_unknown_job_say_so_in_plain_words(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    crop_outside = '[{"op": "crop", "x": 5000, "y": 0, "width": 10, "height": 10}]'
    failed = await finished_job(http, mesh, photo_like(120, 80, "JPEG"), crop_outside, "x.jpg")
    assert failed["status"] == "failed", failed

    problems = await open_page(page, f"/jobs/{failed['id']}")
    await expect(page.locator("#job-badge .badge")).to_have_text("Failed")
    await expect(page.locator("#job-live")).to_contain_text("A parameter does not fit this image")
    await expect(page.locator("#job-result .failure")).to_contain_text("exceeds the 120x80 image")
    await expect(page.locator("#timeline li[data-type='job.failed']")).to_have_count(1)

    unknown = str(uuid.uuid4())
    await page.goto(f"/jobs/{unknown}")
    await expect(page.locator("#job-title")).to_have_text("No such job")
    await expect(page.locator("#job-problem")).to_contain_text(f"there is no job {unknown}")
    assert problems.unexpected(rf"HTTP 404 GET .*/api/v1/jobs/{unknown}(/events)?$") == []


async def test_the_api_docs_render_every_path_of_the_openapi_document(page: Page) -> None:
    problems = await open_page(page, "/api/docs")
    spec = await (await page.request.get("/api/v1/openapi.json")).json()
    await expect(page.locator("#api-title")).to_contain_text(spec["info"]["title"])
    operations = [
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert len(operations) >= 9
    await expect(page.locator(".endpoint")).to_have_count(len(operations))
    for method, path in operations:
        summary = page.locator(
            f'.endpoint > summary:has(.method[data-method="{method}"]):has(.path:text-is("{path}"))'
        )
        await expect(summary).to_have_count(1)

    post_jobs = page.locator(".endpoint").filter(
        has=page.locator(
            '> summary:has(.method[data-method="post"]):has(.path:text-is("/api/v1/jobs"))'
        )
    )
    body = post_jobs.locator(".endpoint-body")
    await expect(body).to_be_hidden()
    await post_jobs.locator("> summary").click()
    await expect(body).to_be_visible()
    await expect(body).to_contain_text("multipart/form-data")
    codes = await body.locator(".status-code").all_inner_texts()
    assert {"202", "400", "413", "415", "422", "503"} <= set(codes)
    await expect(body.locator(".prop", has_text="pipeline")).to_be_visible()

    await page.get_by_label("Filter endpoints").fill("lineage")
    await expect(page.locator(".endpoint:visible")).to_have_count(1)
    await page.get_by_label("Filter endpoints").fill("")
    await expect(page.locator(".endpoint:visible")).to_have_count(len(operations))
    asyncapi = page.get_by_role("link", name=re.compile(r"^AsyncAPI"))
    await expect(asyncapi).to_have_attribute("href", "/api/v1/asyncapi.json")
    await screenshot(page, "api-docs")
    assert problems.unexpected() == []


async def test_at_phone_width_nothing_scrolls_sideways(
    phone: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    problems = await open_upload_page(phone)
    long_name = "IMG_20261121_180054_a_very_long_name_straight_from_a_phone_camera.jpg"
    await phone.get_by_label("Choose images").set_input_files(
        [upload(long_name, "image/jpeg", photo_like(900, 1200, "JPEG"))]
    )
    await phone.get_by_role("button", name="Web thumbnail").click()
    await add_operation(phone, "watermark")
    await phone.get_by_label("Text").fill("imagemesh")
    await phone.get_by_role("button", name="Upload and process 1 image").click()
    job = card(phone, long_name)
    await wait_for_status(job, mesh)
    await images_loaded(job)
    await no_horizontal_scroll(phone)
    await screenshot(phone, "phone-upload")

    job_id = await job.get_attribute("data-job-id")
    await phone.goto(f"/jobs/{job_id}")
    await expect(phone.locator("#timeline ol.timeline")).to_be_visible()
    await expect(phone.locator(".lineage-card").first).to_be_visible()
    await images_loaded(phone.locator("#job-result"))
    await no_horizontal_scroll(phone)
    await screenshot(phone, "phone-job")
    for path, ready, name in (
        ("/history", "#history tbody tr", "phone-history"),
        ("/api/docs", ".endpoint", "phone-api-docs"),
    ):
        await phone.goto(path)
        await expect(phone.locator(ready).first).to_be_visible()
        await images_loaded(phone.locator("main"))
        await no_horizontal_scroll(phone)
        await screenshot(phone, name)
    assert problems.unexpected() == []


UNNAMED_CONTROLS = """() => {
  const named = (el) => {
    const by = (el.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean)
      .map((id) => (document.getElementById(id) || {}).textContent || "").join(" ");
    const labels = [...(el.labels || [])].map((label) => label.textContent).join(" ");
    const own = ["BUTTON", "A", "SUMMARY"].includes(el.tagName) ? el.textContent : "";
    return [el.getAttribute("aria-label"), by, labels, own, el.title].some((t) => t && t.trim());
  };
  return [...document.querySelectorAll("input, select, textarea, button, a[href], summary")]
    .filter((el) => !named(el)).map((el) => el.outerHTML.slice(0, 120));
}"""


async def test_every_control_has_a_name_and_keyboard_focus_is_visible(
    page: Page, mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    job = await finished_job(
        http, mesh, photo_like(200, 100, "PNG"), '[{"op": "grayscale"}]', "a11y.png"
    )
    problems = await open_upload_page(page)
    await page.get_by_role("button", name="Web thumbnail").click()
    for name in ("convert", "strip", "watermark", "rotate", "dither"):
        await add_operation(page, name)
    await expect(page.get_by_label("Choose images")).to_have_attribute("type", "file")
    await expect(page.get_by_label("Operation to add")).to_be_visible()
    await expect(page.get_by_label("Pipeline JSON")).to_be_attached()
    assert await page.evaluate(UNNAMED_CONTROLS) == []
    # Progress is announced: each job card's status line is a live region.
    await expect(page.locator("#announcer")).to_have_attribute("aria-live", "polite")

    # On a fresh page the first Tab reaches the skip link, and focus shows an outline.
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    outline = await page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in {"none", ""}

    pages = {
        "/history": "#history tbody tr",
        f"/jobs/{job['id']}": "#timeline ol.timeline",
        "/api/docs": ".endpoint",
    }
    for path, ready in pages.items():
        await page.goto(path)
        await expect(page.locator(ready).first).to_be_visible()
        assert await page.evaluate(UNNAMED_CONTROLS) == [], path
        await expect(page.locator(".site-nav a[aria-current=page]")).to_have_count(
            0 if path.startswith("/jobs/") else 1
        )
    await expect(page.get_by_label("Filter endpoints")).to_be_visible()
    assert problems.unexpected() == []


async def test_a_status_outage_is_explained_and_the_job_still_followed(
    page: Page, mesh: Mesh
) -> None:
    """While the job's status and events answer 503, the card shows the API's reason and
    keeps following (polling); once they answer again it reaches the result."""
    outage = {"code": "unavailable", "message": "the provenance service is unavailable"}
    released = asyncio.Event()
    refused = 0

    async def status(route: Route) -> None:
        nonlocal refused
        if not released.is_set():
            refused += 1
            await route.fulfill(status=503, json={"error": outage}, headers={"Retry-After": "1"})
        else:
            await route.continue_()

    problems = await open_upload_page(page)
    await page.route(re.compile(r"/api/v1/jobs/[^/?]+(/events)?$"), status)
    await page.get_by_label("Choose images").set_input_files(
        [upload("photo.jpg", "image/jpeg", photo_like(300, 200, "JPEG"))]
    )
    await add_operation(page, "grayscale")
    await page.get_by_role("button", name="Upload and process 1 image").click()

    job = card(page, "photo.jpg")
    await expect(job.locator(".status-line")).to_contain_text(
        "the provenance service is unavailable; still trying"
    )
    released.set()
    assert refused >= 2  # the event stream, then the status
    await wait_for_status(job, mesh)
    await expect(job.locator(".status-line")).not_to_contain_text("unavailable")
    result = await page.request.get(
        await job.get_by_role("link", name=re.compile(r"^Download")).get_attribute("href") or ""
    )
    image = decode(await result.body())
    assert image.size == (300, 200)
    assert image.mode == "L"
    assert problems.unexpected(r"HTTP 503 GET .*/api/v1/jobs/") == []


async def test_a_busy_service_is_retried_after_retry_after(page: Page, mesh: Mesh) -> None:
    busy = {"code": "busy", "message": "1001 jobs are waiting to be processed; try again shortly"}
    posts = 0

    async def once_busy(route: Route) -> None:
        nonlocal posts
        posts += 1
        if posts == 1:
            await route.fulfill(status=503, json={"error": busy}, headers={"Retry-After": "1"})
        else:
            await route.continue_()

    problems = await open_upload_page(page)
    await page.route(re.compile(r"/api/v1/jobs$"), once_busy)
    await page.get_by_label("Choose images").set_input_files(
        [upload("photo.jpg", "image/jpeg", photo_like(200, 150, "JPEG"))]
    )
    await page.get_by_role("button", name="Upload and process 1 image").click()
    job = card(page, "photo.jpg")
    await expect(job.locator(".status-line")).to_contain_text(
        "Busy: 1001 jobs are waiting to be processed; try again shortly. Trying again in 1 s"
    )
    await wait_for_status(job, mesh)
    assert posts == 2
    assert problems.unexpected(r"HTTP 503 POST .*/api/v1/jobs$") == []
