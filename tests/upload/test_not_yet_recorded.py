"""A job `POST` accepted is never 404 on its provenance or its input's lineage, for its
owner, while provenance has not recorded it yet (it records the intake concurrently;
schemathesis' stateful phase read both at once after the 202): such a read waits briefly,
then answers what is known. Another principal's job, and an id nobody accepted, stay 404.

Served over real HTTP by upload's own guard, routes and `Jobs`, with the job remembered
live as its accepting replica remembers it; provenance is a stand-in that has recorded
nothing yet, or records the job after a few questions."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import BaseModel

from messaging import Broker, topology
from messaging.contracts import FoundDocument, FoundJob, FoundLineage
from messaging.events import ImageUploaded
from objectstore import ObjectStore
from tests.fuzz.samples import envelope, events
from tests.security.test_guard import settings
from upload.errors import error_middleware
from upload.guard import Guard, guard_middleware
from upload.job_ids import new_job_id
from upload.jobs import Jobs
from upload.keys import GUARD, JOBS, LIVE
from upload.live import LiveJobs
from upload.provenance_views import get_lineage, get_provenance
from upload.tokens import new_token, token_hash

ALICE, BOB = new_token(), new_token()
RECORDED = {"prefix": {"imagemesh": "urn:imagemesh:"}, "activity": {"imagemesh:event/x": {}}}


class Provenance:
    """Provenance that records the job only after `recorded_after` questions about it."""

    def __init__(self, recorded_after: int | None) -> None:
        self.recorded_after = recorded_after
        self.asked: Counter[str] = Counter()

    async def call(self, route: Any, request: Any, **_: Any) -> tuple[BaseModel, None]:
        self.asked[route.name] += 1
        found = self.recorded_after is not None and self.asked[route.name] > self.recorded_after
        if route is topology.PROVENANCE_JOB_PROV:
            return FoundDocument(found=found, document=RECORDED if found else None), None
        if route is topology.PROVENANCE_LINEAGE:
            lineage = {"image": {}, "produced_by": [], "used_by": ["recorded"],
                       "ancestors": [], "descendants": []}  # fmt: skip
            return FoundLineage(found=found, lineage=lineage if found else None), None
        assert route is topology.PROVENANCE_JOB_STATUS, route
        return FoundJob(found=False), None


async def serve(provenance: Provenance) -> tuple[TestServer, str, str]:
    """The routes, and a job of alice's accepted by this replica: its id and input."""
    guard = Guard(
        settings(upload_api_token_hashes=f"alice:{token_hash(ALICE)},bob:{token_hash(BOB)}")
    )
    app = web.Application(middlewares=[error_middleware, guard_middleware(guard)])
    app[GUARD] = guard
    app[LIVE] = LiveJobs()
    app[JOBS] = Jobs(
        cast(Broker, provenance),
        cast(ObjectStore, None),
        input_bucket="inputs",
        rpc_timeout=1.0,
        max_queued=10,
        live=app[LIVE],
    )
    app.router.add_get("/api/v1/jobs/{job_id}/provenance", get_provenance)
    app.router.add_get("/api/v1/images/{sha256}/lineage", get_lineage)
    uploaded = events()["image.uploaded"]
    assert isinstance(uploaded, ImageUploaded)
    job_id = new_job_id()
    app[LIVE].remember(
        envelope(uploaded.type),
        uploaded.model_copy(update={"job_id": job_id, "principal": "alice"}),
    )
    return TestServer(app), job_id, uploaded.input.sha256


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def read(
    http: aiohttp.ClientSession, server: TestServer, path: str, token: str
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(server.make_url(path), headers=headers) as response:
        return response.status, await response.json()


async def test_a_job_not_recorded_yet_has_its_known_provenance_and_lineage_for_its_owner(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("upload.provenance_views.RECORDING_WAIT_SECONDS", 0.3)
    monkeypatch.setattr("upload.jobs.ARRIVAL_WAIT_SECONDS", 0.3)
    server, job_id, sha256 = await serve(Provenance(recorded_after=None))
    async with server:
        status, document = await read(http, server, f"/api/v1/jobs/{job_id}/provenance", ALICE)
        assert status == 200, document
        assert document["activity"] == {}  # nothing recorded yet
        assert list(document["entity"]) == [f"sha256:{sha256}"]  # the input, as uploaded
        status, lineage = await read(http, server, f"/api/v1/images/{sha256}/lineage", ALICE)
        assert status == 200, lineage
        assert (lineage["sha256"], lineage["used_by"]) == (sha256, [job_id])
        assert lineage["image"]["format"]
        assert lineage["produced_by"] == lineage["ancestors"] == lineage["descendants"] == []

        # Another principal's job and input stay unknown to bob; an id nobody accepted too.
        for path in (f"/api/v1/jobs/{job_id}/provenance", f"/api/v1/images/{sha256}/lineage"):
            assert (await read(http, server, path, BOB))[0] == 404
        stranger = f"/api/v1/jobs/{new_job_id()}/provenance"
        assert (await read(http, server, stranger, ALICE))[0] == 404


async def test_a_job_recorded_moments_later_is_answered_with_its_record(
    http: aiohttp.ClientSession,
) -> None:
    provenance = Provenance(recorded_after=2)
    server, job_id, sha256 = await serve(provenance)
    async with server:
        status, document = await read(http, server, f"/api/v1/jobs/{job_id}/provenance", ALICE)
        assert (status, document) == (200, RECORDED)
        status, lineage = await read(http, server, f"/api/v1/images/{sha256}/lineage", ALICE)
        assert (status, lineage["used_by"]) == (200, ["recorded"])
    assert provenance.asked[topology.PROVENANCE_JOB_PROV.name] == 3
