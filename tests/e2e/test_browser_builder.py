"""The pipeline builder in headless Chromium (tests/browser.py): what the JSON view shows is
what runs, parameters appear when they apply, and pipelines survive reloads, are saved by
name and shared by link. Issue 15, points 1, 2 and 9 and the "also expected" pipelines.

The pages run under the service's Content-Security-Policy (no `eval`): waits are
Playwright expectations on locators."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from playwright.async_api import Browser, Locator, Page, ViewportSize, expect

from tests.browser import PageProblems, page_on, photo_like, screenshot, upload
from tests.conftest import Mesh

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

WIDE: ViewportSize = {"width": 1366, "height": 900}
NARROW: ViewportSize = {"width": 390, "height": 844}
NARROWEST: ViewportSize = {"width": 320, "height": 700}


@pytest.fixture
async def page(browser: Browser, mesh: Mesh) -> AsyncIterator[Page]:
    async with page_on(browser, mesh.upload_url, WIDE) as opened:
        yield opened


async def open_builder(page: Page, path: str = "/") -> PageProblems:
    problems = PageProblems(page)
    response = await page.goto(path)
    assert response is not None
    assert response.ok
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return problems


async def add_operation(page: Page, name: str) -> Locator:
    await page.get_by_label("Operation to add").select_option(name)
    await page.get_by_role("button", name="Add", exact=True).click()
    return page.locator(f'#ops > li.op[data-op="{name}"]').last


async def builder_pipeline(page: Page) -> Any:
    """The pipeline the builder holds, as its JSON view shows it when not being edited."""
    return json.loads(await page.get_by_label("Pipeline JSON").input_value())


async def ops_shown(page: Page) -> list[str]:
    return [
        await step.get_attribute("data-op") or ""
        for step in await page.locator("#ops > li.op").all()
    ]


# --------------------------------------------------------------------------- point 1


async def test_the_json_view_reports_an_invalid_value_where_it_is_and_changes_nothing(
    page: Page,
) -> None:
    problems = await open_builder(page)
    await page.get_by_role("button", name="Web thumbnail").click()
    await page.get_by_text("Pipeline as JSON (advanced)").click()
    editor = page.get_by_label("Pipeline JSON")
    error = page.locator(".json-view .field-error")
    use = page.get_by_role("button", name="Use this JSON")

    cases = {
        '[{"op":"convert","format":"bmp"}]': ("Step 1 (convert)", "format", "\u201cbmp\u201d"),
        '[{"op":"blur","sigma":"lots"}]': ("Step 1 (blur)", "sigma", "must be a number"),
        '[{"op":"grayscale"},{"op":"strip","keep":["icc","icc"]}]': (
            "Step 2 (strip)",
            "keep",
            "twice",
        ),
        '[{"op":"watermark","text":5}]': ("Step 1 (watermark)", "text", "must be text"),
    }
    for text, (where, param, why) in cases.items():
        await editor.fill(text)
        await use.click()
        await expect(error).to_be_visible()
        for words in (where, param, why):
            await expect(error).to_contain_text(words)
        await expect(editor).to_have_attribute("aria-invalid", "true")
        # Nothing changed: the text stays as typed, the builder as it was.
        await expect(editor).to_have_value(text)
        # The step at fault is selected in the box.
        await expect(editor).to_be_focused()
        selected = await editor.evaluate(
            "(box) => box.value.slice(box.selectionStart, box.selectionEnd)"
        )
        assert selected == json.dumps(
            json.loads(text)[int(where.split()[1]) - 1], separators=(",", ":")
        ), text
        assert await ops_shown(page) == ["thumbnail"], text

    # A valid pipeline loads exactly as written, nothing dropped or rewritten.
    exact = [
        {"op": "convert", "format": "webp", "quality": 80, "lossless": False},
        {"op": "watermark", "text": "mine", "colour": "#FFAA00"},
    ]
    await editor.fill(json.dumps(exact))
    await use.click()
    await expect(error).to_be_hidden()
    assert await ops_shown(page) == ["convert", "watermark"]
    assert await builder_pipeline(page) == exact
    assert problems.unexpected() == []


# --------------------------------------------------------------------------- point 2


async def test_upload_sends_the_json_the_box_shows_even_when_not_applied(page: Page) -> None:
    problems = await open_builder(page)
    posts: list[bytes] = []
    page.on(
        "request",
        lambda r: posts.append(r.post_data_buffer or b"") if r.method == "POST" else None,
    )
    await page.get_by_label("Choose images").set_input_files(
        [upload("photo.jpg", "image/jpeg", photo_like(320, 200, "JPEG"))]
    )
    await page.get_by_role("button", name="Web thumbnail").click()
    await page.get_by_text("Pipeline as JSON (advanced)").click()
    editor = page.get_by_label("Pipeline JSON")
    error = page.locator(".json-view .field-error")
    submit = page.get_by_role("button", name=re.compile(r"^Upload and process"))

    # An edit that is not valid is refused at Upload, where it is, and nothing is sent.
    await editor.fill('[{"op":"grayscale"},{"op":"convert","format":"bmp"}]')
    await submit.click()
    await expect(error).to_contain_text("Step 2 (convert)")
    await expect(editor).to_be_focused()
    assert posts == []

    # Edited after the builder too: which one is meant is unclear, so Upload refuses.
    await editor.fill('[{"op":"grayscale"},{"op":"convert","format":"webp"}]')
    await page.get_by_role("button", name="Dither like the original").click()
    await submit.click()
    await expect(error).to_contain_text("builder")
    assert posts == []
    await page.get_by_role("button", name="Discard the edit").click()
    await expect(editor).to_have_value(re.compile(r'"op":"dither"'))
    await expect(error).to_be_hidden()

    # Edited and not applied: Upload sends what the box shows, and the builder shows it too.
    await page.get_by_role("button", name="Web thumbnail").click()
    wanted = [{"op": "grayscale"}, {"op": "convert", "format": "webp"}]
    await editor.fill(json.dumps(wanted))
    async with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/api/v1/jobs")
    ) as caught:
        await submit.click()
    accepted = await (await caught.value).json()
    # What the service was sent (as it records it: the canonical form of the pipeline).
    job = await (await page.request.get(f"/api/v1/jobs/{accepted['id']}")).json()
    assert [step["op"] for step in job["pipeline"]] == ["grayscale", "convert"], job
    assert job["pipeline"][1]["format"] == "webp", job
    assert await ops_shown(page) == ["grayscale", "convert"]
    assert problems.unexpected() == []


# --------------------------------------------------------------------------- point 9

SELECTS_CUT_OFF = """() => {
  const canvas = document.createElement("canvas").getContext("2d");
  return [...document.querySelectorAll("#builder select")]
    .filter((select) => select.offsetParent !== null)
    .flatMap((select) => {
      const style = getComputedStyle(select);
      canvas.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
      // Chromium draws the drop-down arrow inside the right padding's 20 px or so.
      const room = select.clientWidth - parseFloat(style.paddingLeft)
        - parseFloat(style.paddingRight) - 20;
      return [...select.options]
        .filter((option) => canvas.measureText(option.text).width > room)
        .map((option) => `${select.id}: "${option.text}" in ${Math.round(room)} px`);
    });
}"""


STICKING_OUT = """() => {
  const edge = document.documentElement.clientWidth + 0.5;
  const out = (el) => el.getBoundingClientRect().right > edge;
  return [...document.querySelectorAll("body *")]
    .filter((el) => out(el) && ![...el.children].some(out))
    .map((el) => `${el.tagName} ${el.className}: right ${el.getBoundingClientRect().right}`);
}"""


@pytest.mark.parametrize("viewport", [WIDE, NARROW, NARROWEST], ids=["1366px", "390px", "320px"])
async def test_selects_show_their_whole_text_and_parameters_appear_when_they_apply(
    browser: Browser, mesh: Mesh, viewport: ViewportSize
) -> None:
    async with page_on(browser, mesh.upload_url, viewport) as page:
        problems = await open_builder(page)
        dither = await add_operation(page, "dither")
        matrix, colours = dither.get_by_label("Matrix Size"), dither.get_by_label("Colours")
        await expect(dither.get_by_label("Method")).to_be_visible()
        # The schema's dependentSchemas say when each applies: not for Floyd-Steinberg.
        await expect(matrix).to_be_hidden()
        await expect(colours).to_be_hidden()
        await dither.get_by_label("Method").select_option("bayer")
        await expect(matrix).to_be_visible()
        await expect(colours).to_be_hidden()
        await dither.get_by_label("Method").select_option("palette")
        await expect(colours).to_be_visible()
        await expect(matrix).to_be_hidden()

        thumbnail = await add_operation(page, "thumbnail")
        await expect(thumbnail.get_by_label("Crop")).to_be_hidden()
        await thumbnail.get_by_label("Fit").select_option("cover")
        await expect(thumbnail.get_by_label("Crop")).to_be_visible()

        for name in ("convert", "resize", "watermark", "flip"):
            await add_operation(page, name)
        assert await page.evaluate(SELECTS_CUT_OFF) == []
        await page.get_by_text("Pipeline as JSON (advanced)").click()
        assert await page.evaluate(STICKING_OUT) == []
        await screenshot(page, f"builder-selects-{viewport['width']}")
        assert problems.unexpected() == []


# --------------------------------------------------------------------------- also expected


async def test_the_pipeline_is_remembered_saved_by_name_and_shared_by_link(
    browser: Browser, mesh: Mesh, page: Page
) -> None:
    problems = await open_builder(page)
    thumbnail = await add_operation(page, "thumbnail")
    await thumbnail.get_by_label("Width").fill("300")
    await add_operation(page, "grayscale")
    built = [{"op": "thumbnail", "width": 300}, {"op": "grayscale"}]
    assert await builder_pipeline(page) == built

    # Remembered across a reload.
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    assert await builder_pipeline(page) == built

    # Saved under a name, kept across reloads, and deleted.
    await page.get_by_label("Preset name").fill("Grey 300")
    await page.get_by_role("button", name="Save as preset").click()
    await page.get_by_role("button", name="Clear").click()
    assert await builder_pipeline(page) == []
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    assert await builder_pipeline(page) == []
    await page.get_by_role("button", name="Grey 300", exact=True).click()
    assert await builder_pipeline(page) == built

    # Shared by a link: the pipeline is in the fragment, loaded in a fresh browser.
    link = await page.get_by_role("link", name="Link to this pipeline").get_attribute("href")
    assert link
    assert "#pipeline=" in link
    # Clicking it copies it (or shows it to copy), and leaves this page where it is.
    await page.get_by_role("link", name="Link to this pipeline").click()
    await expect(page.locator(".saved [role=status]")).to_contain_text(
        re.compile(r"Link copied|Copy this link")
    )
    assert "#" not in page.url
    async with page_on(browser, mesh.upload_url, WIDE) as other:
        other_problems = await open_builder(other, link[link.index("/#") :])
        assert await builder_pipeline(other) == built
        assert other_problems.unexpected() == []

    # An invalid link is reported, not applied.
    bad = quote(json.dumps([{"op": "convert", "format": "bmp"}]))
    async with page_on(browser, mesh.upload_url, WIDE) as other:
        await open_builder(other, f"/#pipeline={bad}")
        note = other.locator("#pipeline-source-error")
        await expect(note).to_be_visible()
        await expect(note).to_contain_text("link")
        await expect(note).to_contain_text("Step 1 (convert)")
        await expect(note).to_contain_text("\u201cbmp\u201d")
        assert await ops_shown(other) == []

    await page.get_by_role("button", name="Delete preset Grey 300").click()
    await expect(page.get_by_role("button", name="Grey 300", exact=True)).to_have_count(0)
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await expect(page.get_by_role("button", name="Grey 300", exact=True)).to_have_count(0)
    assert problems.unexpected() == []
