"""What erasing a job is about: its stored objects, and which other jobs use each.

Upload erases a job's objects (`upload/erase.py`) but must never break another job: an
input is content-addressed (`sha256/<hex>.<ext>`), so every job of the same bytes, of any
principal, uses the same object; an output is shared by the jobs that reused it
(`image.reused` takes the earlier job's object); a thumbnail (`thumbnails/<sha256>.webp`)
by every output of the same bytes. Provenance knows them all: `by_input` names each job
whose `image.uploaded` used an input, `images` each job that stored or reused an output.
A job that is erased (its summary holds a `job.erased`) uses nothing any more; a job
without a summary yet is counted as a user (when in doubt, an object stays).

Bounded: at most `MAX_USERS` jobs are looked at per object; four requests in all (the
job's summary, two view reads, the users' summaries). Beyond that the object is shared
whatever they are (`more`). The views are those lineage reads (`by_input`, `images`): on
PouchDB Server, which indexes a view when it is read, the first erasure after many jobs
waits for that indexing as the first lineage read does (an RPC that times out is a 503,
and the repeated DELETE finds the view indexed).
"""

from __future__ import annotations

from typing import Any

from messaging.contracts import JobObjects, ObjectUse
from messaging.events import ImageProcessed, ImageReused
from messaging.thumbnails import thumbnail_key

from . import summaries
from .store import ProvenanceStore

MAX_USERS = 1000
"""Jobs looked at per object: more than this and the object is kept (shared)."""


async def job_objects(store: ProvenanceStore, job_id: str) -> JobObjects:
    """The job's input, output and thumbnail, each with the other jobs (not erased) that use
    it, and what its reuse index entry's key is made of."""
    found = await store.summaries([job_id])
    summary = found.get(job_id)
    job = None if summary is None else summaries.job_of(summary)
    if summary is None or job is None:
        return JobObjects(found=False)
    objects: list[tuple[str, dict[str, Any], list[str], bool]] = []
    source = job.get("input_ref")
    if source:
        users = await store.input_users(source["sha256"], MAX_USERS + 1)
        objects.append(("input", source, users, len(users) > MAX_USERS))
    output = job.get("output_ref")
    if output:
        rows = await store.image_rows(output["sha256"], MAX_USERS + 1)
        more = len(rows) > MAX_USERS
        made = [row for row in rows if row.get("role") == "output"]
        location = f"s3://{output['bucket']}/{output['key']}"
        same = [str(row["job_id"]) for row in made if row.get("location") == location]
        objects.append(("output", output, same, more))
        thumbnail = output | {"key": thumbnail_key(output["sha256"])}
        objects.append(("thumbnail", thumbnail, [str(row["job_id"]) for row in made], more))
    erased = await _erased(store, {u for _, _, users, _ in objects for u in users} - {job_id})
    uses = [
        ObjectUse(
            role=role,
            bucket=image["bucket"],
            key=image["key"],
            sha256=image["sha256"],
            used_by=sorted(set(users) - {job_id} - erased),
            more=more,
        )
        for role, image, users, more in objects
    ]
    engine, key = _computation(summary)
    return JobObjects(found=True, objects=uses, engine=engine, reuse_key=key)


async def _erased(store: ProvenanceStore, job_ids: set[str]) -> set[str]:
    """Those of `job_ids` that are erased (one read of their summaries)."""
    found = await store.summaries(sorted(job_ids))
    erased = set()
    for job_id, summary in found.items():
        job = summaries.job_of(summary)
        if job is not None and job.get("erased_at"):
            erased.add(job_id)
    return erased


def _computation(summary: dict[str, Any]) -> tuple[str | None, str | None]:
    """(engine of the job's computation, key of the computation it reused): what its reuse
    index entry is keyed by."""
    records = summary.get("records", {}).values()
    for record in records:
        data = record.get("data") or {}
        if record.get("type") == ImageProcessed.type and data.get("engine"):
            return str(data["engine"]), None
        if record.get("type") == ImageReused.type and data.get("reuse_key"):
            return None, str(data["reuse_key"])
    return None, None
