"""What the summary writer keeps between writes (`SummaryWriter`): the summaries of
unfinished jobs (their `_rev`), not the finished ones, whose summaries (each holds the
job's status events) grew provenancedb by ~40 MB over its first 4096 jobs. A redelivered
event of a finished job still leaves its summary right: one conflict, one re-read."""

from __future__ import annotations

import itertools
from typing import Any

from messaging.events import Event
from provenancedb.documents import to_document
from provenancedb.summaries import SummaryWriter, summary_id
from tests.fuzz.samples import envelope, events

TRAIL = ("upload.received", "image.uploaded", "job.processing-started", "image.processed")


class FakeCouch:
    """Just enough of `_bulk_docs` and the summary read: revisions and conflicts."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.revs = itertools.count(1)
        self.reads = 0

    async def bulk_docs(self, docs: list[dict[str, Any]], operation: str) -> dict[str, Any]:
        statuses: dict[str, Any] = {}
        for doc in docs:
            current = self.docs.get(doc["_id"])
            if current is not None and current.get("_rev") != doc.get("_rev"):
                statuses[doc["_id"]] = {"error": "conflict"}
                continue
            rev = f"{next(self.revs)}-x"
            self.docs[doc["_id"]] = {**doc, "_rev": rev}
            statuses[doc["_id"]] = {"ok": True, "rev": rev}
        return statuses

    async def read(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        self.reads += 1
        found = {job_id: self.docs.get(summary_id(job_id)) for job_id in job_ids}
        return {job_id: doc for job_id, doc in found.items() if doc is not None}


def documents(job_id: str, *types: str) -> list[dict[str, Any]]:
    samples = events()
    docs = []
    for kind in types:
        event: Event = samples[kind].model_copy(update={"job_id": job_id})
        docs.append(to_document(envelope(kind), event) | {"_id": f"{job_id}:{kind}"})
    return docs


async def test_only_unfinished_jobs_summaries_are_kept() -> None:
    couch = FakeCouch()
    writer = SummaryWriter(couch.bulk_docs, couch.read)
    for n in range(1000):
        await writer.write(documents(f"job-{n}", *TRAIL[:2]), "record")
        if n >= 3:  # three jobs in flight at a time
            await writer.write(documents(f"job-{n - 3}", *TRAIL[2:]), "record")
    assert writer.remembered == 3
    assert couch.reads == 0  # every write had the summary it needed at hand
    assert couch.docs[summary_id("job-500")]["status"] == "succeeded"
    assert couch.docs[summary_id("job-999")]["status"] == "queued"


async def test_a_redelivered_event_of_a_finished_job_conflicts_once_and_changes_nothing() -> None:
    couch = FakeCouch()
    writer = SummaryWriter(couch.bulk_docs, couch.read)
    await writer.write(documents("job-1", *TRAIL), "record")
    stored = couch.docs[summary_id("job-1")]
    assert writer.remembered == 0

    statuses = await writer.write(documents("job-1", "job.processing-started"), "record")

    assert couch.reads == 1
    # The event existed already (as on CouchDB); its summary is not in error.
    assert statuses["job-1:job.processing-started"] == {"error": "conflict"}
    assert couch.docs[summary_id("job-1")] == stored  # the same summary, not rewritten
    assert writer.remembered == 0
