"""Every read route of a job `POST` just accepted answers for its owner, however far
provenance has got recording it (it records the intake concurrently with the 202):
schemathesis' stateful phase read the provenance at once after the POST and got 404.
Here provenancedb writes each batch late on purpose (its commit linger at the most), so
that the reads always come before the record."""

from __future__ import annotations

import json
from collections.abc import Iterator

import aiohttp
import pytest

from tests.conftest import Mesh
from tests.e2e.helpers import photo, submit, wait_finished

pytestmark = pytest.mark.e2e

LATE_LINGER_MS = "1000"
"""provenancedb's longest commit linger: a batch is written a second after its first event."""


def restart_provenancedb(mesh: Mesh, env: dict[str, str]) -> None:
    mesh.stop("provenancedb")
    mesh.env = env
    mesh.start("provenancedb")
    mesh.wait_ready("provenancedb")


@pytest.fixture
def late_provenance(mesh: Mesh) -> Iterator[None]:
    """provenancedb recording each event about a second after it passed, then as before."""
    usual = mesh.env
    restart_provenancedb(mesh, {**usual, "PROVENANCEDB_COMMIT_LINGER_MS": LATE_LINGER_MS})
    try:
        yield
    finally:
        restart_provenancedb(mesh, usual)


@pytest.mark.usefixtures("late_provenance")
async def test_a_job_just_accepted_has_every_read_route_at_once(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    base = mesh.upload_url
    response = await submit(http, base, photo(160, 120), json.dumps([{"op": "grayscale"}]))
    assert response.status == 202, await response.text()
    links = (await response.json())["links"]
    for name in ("self", "provenance", "input_lineage"):
        async with http.get(f"{base}{links[name]}") as read:
            assert read.status == 200, (name, await read.text())
            body = await read.json()
        if name == "provenance":
            assert set(body) >= {"prefix", "activity", "entity"}
        if name == "input_lineage":
            assert body["sha256"] in links["input_lineage"]
    for path in (links["result"], f"{links['self']}/input", f"{links['self']}/thumbnail"):
        # Not finished yet (409), or already done: never unknown.
        async with http.get(f"{base}{path}", allow_redirects=False) as read:
            assert read.status in (200, 307, 409), (path, read.status, await read.text())
    job = await wait_finished(http, base, links["self"].rsplit("/", 1)[-1])
    assert job["status"] == "succeeded", job
