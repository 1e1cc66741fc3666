"""An auditor finds a job's history in Fauxton, as README.md ("Finding a job's history in
Fauxton") tells them to: log in, open the provenance database, Design Documents → provenance
→ Views → by_job, query options Include Docs and keys between [job] and [job, {}], Run Query.

Fauxton here is the one PouchDB Server serves (pouchdb-fauxton 0.0.6, a 2017 Fauxton), driven
in Debian's Chromium (tests/browser.py). Its query options panel sends `start_key` and
`end_key` (not `startkey`/`endkey`), which PouchDB Server honours; the same query also works
as a link: `#/database/<db>/_design/provenance/_view/by_job?startkey=...&include_docs=true`."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, Response, expect

from tests.browser import PageProblems, page_on, screenshot
from tests.conftest import Mesh, complete_trail
from tests.e2e.helpers import photo, submit, wait_finished
from tests.waiting import async_wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PIPELINE: list[dict[str, Any]] = [
    {"op": "thumbnail", "width": 200, "height": 200},
    {"op": "grayscale"},
]
# Another job in the same database, whose rows the key range must leave out.
NEIGHBOUR: list[dict[str, Any]] = [{"op": "blur", "sigma": 1}]
TIMELINE = [
    "upload.received",
    "image.uploaded",
    "job.processing-started",
    "image.processed",
]
"""A successful job's documents, whatever its operations (they are image.processed's)."""


@pytest.fixture
async def fauxton(browser: Browser, mesh: Mesh) -> AsyncIterator[Page]:
    """A page on Fauxton, in a context of its own (so not logged in)."""
    base = mesh.env["COUCHDB_URL"].rstrip("/")
    async with page_on(browser, base, {"width": 1400, "height": 1000}) as page:
        yield page


async def run_job(
    mesh: Mesh, http: aiohttp.ClientSession, pipeline: list[dict[str, Any]]
) -> tuple[str, list[dict[str, Any]]]:
    """(job id, its provenance documents) of a job run to success, once its trail is whole."""
    response = await submit(
        http, mesh.upload_url, photo(480, 320), json.dumps(pipeline), filename="in.jpg"
    )
    assert response.status == 202, await response.text()
    job_id: str = (await response.json())["id"]
    job = await wait_finished(http, mesh.upload_url, job_id)
    assert job["status"] == "succeeded", job
    docs = await async_wait_for(lambda: complete_trail(mesh.env, job_id), timeout=20)
    return job_id, docs


async def log_in(page: Page, user: str, password: str) -> None:
    """Fauxton's own login form (#/login), which POSTs to /_session for the cookie."""
    response = await page.goto("/_utils/#login")
    assert response is not None
    assert response.ok, response.status
    await page.fill("#username", user)
    await page.fill("#password", password)
    async with page.expect_response(
        lambda r: r.url.endswith("/_session") and r.request.method == "POST"
    ) as session:
        await page.click("#submit")
    assert (await session.value).ok, await (await session.value).text()
    notice = page.locator("#global-notifications .global-notification")
    await expect(notice).to_contain_text("You have been logged in.")
    # The notice covers the page's header (its Options button) for a few seconds: close it.
    await notice.locator(".fonticon-cancel").click()
    await expect(notice).to_have_count(0)
    await expect(page.get_by_role("link", name="Logout")).to_be_visible()


def query_of(response: Response) -> dict[str, Any]:
    """The view query Fauxton sent, keys decoded; either spelling of the key range."""
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(response.url).query))
    for spelled, name in (("start_key", "startkey"), ("end_key", "endkey")):
        if spelled in params:
            params[name] = params.pop(spelled)
    for name in ("startkey", "endkey"):
        if name in params:
            params[name] = json.loads(params[name])
    return params


def is_by_job(response: Response) -> bool:
    return response.url.partition("?")[0].endswith("/_design/provenance/_view/by_job")


def is_ranged_by_job(response: Response) -> bool:
    query = response.url.partition("?")[2]
    return is_by_job(response) and ("start_key=" in query or "startkey=" in query)


async def test_an_auditor_finds_a_jobs_timeline_in_fauxton(
    mesh: Mesh, http: aiohttp.ClientSession, fauxton: Page
) -> None:
    page = fauxton
    problems = PageProblems(page)
    # The auditor logs in while the jobs run.
    (job_id, docs), (other_id, _), _ = await asyncio.gather(
        run_job(mesh, http, PIPELINE),
        run_job(mesh, http, NEIGHBOUR),
        # As the read-only auditor (role `auditor`): what Fauxton needs, nothing more.
        log_in(page, mesh.env["COUCHDB_AUDITOR_USER"], mesh.env["COUCHDB_AUDITOR_PASSWORD"]),
    )
    assert [doc["type"] for doc in docs] == TIMELINE
    db = mesh.env["COUCHDB_DB"]

    # Open the database, then Design Documents → provenance → Views → by_job.
    await page.goto(f"/_utils/#/database/{urllib.parse.quote(db)}/_all_docs")
    sidebar = page.locator("#sidebar-content")
    await sidebar.get_by_role("link", name="Design Documents").click()
    await sidebar.locator("#nav-header-provenance").click()
    await sidebar.locator("#nav-design-function-provenanceviews").get_by_text("Views").click()
    async with page.expect_response(is_by_job) as listed:
        await sidebar.get_by_role("link", name="by_job", exact=True).click()
    assert (await listed.value).ok
    await expect(page).to_have_url(re.compile(r"/_design/provenance/_view/by_job$"))
    rows = page.locator("#doc-list .doc-row")
    # Unqueried, the view lists more than this job's rows (the other job's, at least).
    await expect(rows.first.locator(".doc-data")).to_contain_text(re.compile(r'"value": "[\w.-]+"'))
    await expect(rows.nth(len(docs))).to_be_attached()

    # Query options: Include Docs, keys between [job] and [job, {}], Run Query.
    await page.get_by_title("Query Options").click()
    tray = page.locator("#query-options-tray")
    await expect(tray).to_be_visible()
    await tray.get_by_text("Include Docs").click()
    await expect(tray.locator("#qoIncludeDocs")).to_be_checked()
    await tray.get_by_text("Between Keys").click()
    await tray.get_by_label("Start key", exact=True).fill(json.dumps([job_id]))
    await tray.get_by_label("End key", exact=True).fill(json.dumps([job_id, {}]))
    async with page.expect_response(is_ranged_by_job) as queried:
        await tray.get_by_role("button", name="Run Query").click()
    response = await queried.value
    assert response.ok, response.status
    query = query_of(response)
    assert query["include_docs"] == "true"
    assert query["startkey"] == [job_id]
    assert query["endkey"] == [job_id, {}]
    # The hash route keeps the query: the page can be bookmarked or shared.
    assert "include_docs=true" in urllib.parse.unquote(page.url)
    assert job_id in urllib.parse.unquote(page.url)

    # The JSON view: one box per row, {key, id, value, doc}, in key order (= time order).
    await expect(rows).to_have_count(len(docs))
    await expect(page.get_by_text(f"Showing document 1 - {len(docs)}.")).to_be_visible()
    shown = [json.loads(text) for text in await rows.locator(".doc-data pre").all_inner_texts()]
    assert [row["id"] for row in shown] == [doc["_id"] for doc in docs]
    assert [row["value"] for row in shown] == TIMELINE
    assert all(row["key"][0] == job_id and row["doc"]["job_id"] == job_id for row in shown)
    times = [row["key"][1] for row in shown]
    assert times == sorted(times)
    assert [row["doc"]["time"] for row in shown] == times
    (processed,) = [row["doc"] for row in shown if row["value"] == "image.processed"]
    assert [step["op"] for step in processed["data"]["steps"]] == ["thumbnail", "grayscale"]
    page_text = await page.locator("#dashboard-content").inner_text()
    assert other_id not in page_text
    assert '"op": "thumbnail"' in page_text
    assert '"op": "grayscale"' in page_text
    assert '"blur"' not in page_text

    # The table view: the value column reads as the job's timeline.
    await page.get_by_role("button", name="Table").click()
    table = page.locator(".table-view-docs table")
    await expect(table.locator("tbody tr")).to_have_count(len(docs))
    headers = [text.strip() for text in await table.locator("thead th").all_inner_texts()]
    value_column = headers.index("value")
    cells = table.locator(f"tbody tr td:nth-child({value_column + 1})")
    await expect(cells).to_have_text(TIMELINE)
    await screenshot(page, "fauxton-by-job")
    # Fauxton looks at `_users` after logging in; only admins may (provenancedb.migrate
    # closes it to everyone else on PouchDB Server), so the auditor is refused there.
    refused_users_db = re.compile(r"^HTTP 40[13] GET \S+/_users(\?\S*)?$")
    assert [m for m in problems.messages if not refused_users_db.match(m)] == []
