"""Erasing a job: `DELETE /api/v1/jobs/{id}` deletes its pixels and records that it did.

What goes, for a finished job (succeeded, failed or cancelled) of the caller's:

- its **reuse index entry** (`computations/<key>.json`, `messaging.computations`), when it
  points at the job's output: deleted first, so that no later job is given an output being
  erased (a runner that remembers the entry checks it still exists before taking it);
- its **output** (`<job id>/output.<ext>`), unless another job that is not erased uses the
  same object (a job that reused it, or the job it reused);
- the output's **thumbnail** (`thumbnails/<sha256>.webp`), unless another job that is not
  erased has an output of the same bytes;
- its **input** (`sha256/<hex>.<ext>`, content-addressed), unless another job that is not
  erased used the same bytes: of another principal, and also of the same one (deleting it
  would break that job's `/input` and its retry).

Who else uses an object, provenance says (`provenancedb.job-objects`), plus the jobs this
replica accepted a moment ago that provenance may not have recorded yet. The deletions are
done before the answer (S3 deletes are idempotent), then `job.erased` is published, naming
each object deleted or kept and why, and confirmed by the broker: the 204 is true. Should
the publish fail, the answer is 503 and a repeated DELETE completes the erasure (the event's
id derives from the job's, so it is recorded once). Erasing an erased job again is 204 and
records nothing. Provenance keeps the hashes, sizes, times, file name and principal: see
SECURITY.md, "Erasure".

Only the job's owner may erase it: an auditor reads every job but changes none (403), and
anyone else's job is not found (404), as for every job route.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import structlog
from aiohttp import web

from messaging import Broker, RpcError, follow_up_id, topology
from messaging.computations import index_key, reuse_key
from messaging.constants import FINAL_STATUSES
from messaging.contracts import JobObjects, JobRequest, ObjectUse
from messaging.events import ErasedObject, JobErased
from objectstore import ObjectNotFound, ObjectStore
from pipeline import canonical_pipeline

from .errors import ApiError
from .guard import principal_of
from .keys import BROKER, JOBS, LIVE, SETTINGS, STORE
from .live import LiveJobs
from .openapi import Doc, documented, error
from .publishing import unavailable
from .routes import JOB_ID, UNAVAILABLE, UNKNOWN_JOB, _job_id, routes

log = structlog.get_logger("upload")
ERASURE_ID_NAMESPACE = "erasure"
"""A job's `job.erased` id is derived from its id: a repeated erasure is one record."""


@routes.delete("/api/v1/jobs/{job_id}")
@documented(
    Doc(
        "Erase a finished job: delete its images, keep its record",
        {
            204: ("the job's images are deleted (or it was erased already)", None),
            403: error("an auditor's request: only the job's owner may erase it (`forbidden`)"),
            404: UNKNOWN_JOB,
            409: error("the job is queued or processing (`not_finished`): cancel it first"),
            503: UNAVAILABLE,
        },
        description="For a succeeded, failed or cancelled job of the caller's, deletes from "
        "S3, before answering: its output, the output's thumbnail, its reuse index entry "
        "(no later job is given the output) and its input. An object another job that is "
        "not erased still uses stays: an input is stored once per content, so every job "
        "of the same bytes (of any principal, and the caller's own other jobs: their "
        "`/input` and retry need it) shares it; an output is shared by the jobs that "
        "reused it. Then `/result`, `/input` and `/thumbnail` answer `410` (`gone`), "
        "`results.zip` leaves the job out, and the status shows `erased_at` and "
        "`erased_by`. Provenance keeps the job's record (hashes, sizes, dimensions, "
        "times, file name, principal, pipeline) and adds a `job.erased` step naming each "
        "object deleted or kept and why. Erasing an erased job again is `204` and "
        "records nothing; after a `503`, a repeated DELETE completes the erasure.",
        parameters=(JOB_ID,),
    )
)
async def erase_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    principal = principal_of(request)
    job = await request.app[JOBS].owned(job_id, principal, "erase")
    if job.get("erased_at"):
        return web.Response(status=204)  # erased already: nothing new to do or record
    if job["status"] not in FINAL_STATUSES:
        raise ApiError(
            409,
            "not_finished",
            f"the job is {job['status']}: cancel it first (POST /api/v1/jobs/{job_id}/cancel), "
            "then erase it",
        )
    with structlog.contextvars.bound_contextvars(job_id=job_id):
        eraser = Eraser(
            request.app[BROKER],
            request.app[STORE],
            request.app[LIVE],
            rpc_timeout=request.app[SETTINGS].rpc_timeout_seconds,
        )
        await eraser.erase(job, principal.name)
    return web.Response(status=204)


class Eraser:
    """Deletes one job's objects that no other job uses, then records `job.erased`."""

    def __init__(
        self, broker: Broker, store: ObjectStore, live: LiveJobs, *, rpc_timeout: float
    ) -> None:
        self._broker = broker
        self._store = store
        self._live = live
        self._rpc_timeout = rpc_timeout

    async def erase(self, job: dict[str, Any], principal: str) -> None:
        """Delete what of `job` no other job uses, in `ORDER` after its reuse entry, then
        record it all (deleted or kept, and why) in `job.erased`; ApiError 503 when
        provenance, S3 or the broker cannot do their part (a repeat completes it)."""
        facts = await self._objects(job["id"])
        erased: list[ErasedObject] = []
        output = next((use for use in facts.objects if use.role == "output"), None)
        output_goes = output is not None and self._kept(job["id"], output) is None
        entry = await self._erase_entry(job, facts, output_goes=output_goes)
        if entry is not None:
            erased.append(entry)
            # A runner may have taken the entry just before it went: ask again who uses
            # the output, now that no later job can be given it.
            facts = await self._objects(job["id"])
        known = [use for use in facts.objects if use.role in ORDER]  # a newer reply's others
        for use in sorted(known, key=lambda use: ORDER.index(use.role)):
            kept = self._kept(job["id"], use)
            if kept is None:
                await self._delete(use.bucket, use.key)
            erased.append(
                ErasedObject.model_validate(
                    {
                        "role": use.role,
                        "bucket": use.bucket,
                        "key": use.key,
                        "sha256": use.sha256,
                        "deleted": kept is None,
                        "kept_because": kept,
                    }
                )
            )
        await self._record(job["id"], principal, erased)

    def _kept(self, job_id: str, use: ObjectUse) -> str | None:
        """Why the object stays (other jobs that are not erased use it), or None: it goes."""
        if use.more:
            return "used by more other jobs than were looked at"
        users = set(use.used_by) | self._live_users(job_id, use.role, use.sha256)
        others = len({other for other in users if not self._erased_here(other)})
        return f"used by {others} other job{'s' if others > 1 else ''}" if others else None

    def _erased_here(self, job_id: str) -> bool:
        """Whether this replica erased the job (or saw it erased) a moment ago, which
        provenance may not have recorded yet."""
        return bool(self._live.annotated({"id": job_id}).get("erased_at"))

    async def _objects(self, job_id: str) -> JobObjects:
        """What provenance knows of the job's objects and who else uses them; 503 if it
        cannot say (or does not know the job yet: nothing is deleted blind)."""
        try:
            reply, _ = await self._broker.call(
                topology.PROVENANCE_JOB_OBJECTS,
                JobRequest(job_id=job_id),
                timeout=self._rpc_timeout,
                job_id=job_id,
            )
        except RpcError as exc:
            log.warning("erase_unavailable", reason="provenance", code=exc.code)
            raise _unavailable("provenance cannot say who else uses the job's images") from exc
        if not reply.found:
            raise _unavailable("provenance has not recorded the job's end yet")
        return reply

    def _live_users(self, job_id: str, role: str, sha256: str) -> set[str]:
        """Jobs this replica accepted with the same input bytes, which provenance may not
        have recorded yet (their input must stay)."""
        if role != "input":
            return set()
        return {other for other in self._live.taking(sha256, None) if other != job_id}

    async def _erase_entry(
        self, job: dict[str, Any], facts: JobObjects, *, output_goes: bool
    ) -> ErasedObject | None:
        """Delete the reuse index entry of the job's computation when it names the job, or
        points at the job's output and that output goes; None when there is none to delete
        (failed, engine unknown, or an entry of another job whose output stays)."""
        output, source = job.get("output_ref"), job.get("input_ref")
        key = facts.reuse_key
        if key is None and output and source and facts.engine:
            pipeline = canonical_pipeline(job.get("pipeline", []))
            if pipeline is not None:
                key = reuse_key(source["sha256"], pipeline, facts.engine)
        if key is None or not output:
            return None
        entry = await self._entry(output["bucket"], index_key(key))
        if entry is None:
            return None
        points_at = (entry.get("output") or {}).get("key") == output["key"]
        if entry.get("job_id") != job["id"] and not (points_at and output_goes):
            return None  # the computation of another job, whose output stays
        await self._delete(output["bucket"], index_key(key))
        return ErasedObject(
            role="computation", bucket=output["bucket"], key=index_key(key), deleted=True
        )

    async def _entry(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            raw = await self._store.get(bucket, key)
        except ObjectNotFound:
            return None
        except Exception as exc:
            log.warning("erase_unavailable", reason="s3", key=key, error=repr(exc))
            raise _unavailable("the image store is unavailable") from exc
        try:
            entry = json.loads(raw)
        except ValueError:
            return None  # not an entry the runner would trust either
        return entry if isinstance(entry, dict) else None

    async def _delete(self, bucket: str, key: str) -> None:
        try:
            await self._store.delete(bucket, key)
        except Exception as exc:
            log.warning("erase_unavailable", reason="s3", key=key, error=repr(exc))
            raise _unavailable("the image store is unavailable") from exc

    async def _record(self, job_id: str, principal: str, objects: list[ErasedObject]) -> None:
        """Publish `job.erased` (broker-confirmed) and show it at once on this replica."""
        event = JobErased(job_id=job_id, principal=principal, objects=objects)
        envelope = dataclasses.replace(
            self._broker.envelope_for(event),
            id=follow_up_id(job_id, JobErased.type, ERASURE_ID_NAMESPACE),
        )
        try:
            await self._broker.publish(event, envelope=envelope)
        except Exception as exc:
            log.warning("erase_not_recorded", error=repr(exc))
            raise _unavailable("the erasure could not be recorded") from exc
        self._live.mark(envelope, event)
        log.info(
            "job_erased",
            principal=principal,
            deleted=sum(o.deleted for o in objects),
            kept=sum(not o.deleted for o in objects),
        )


ORDER = ("output", "thumbnail", "input")
"""The order objects are deleted in: what the job made, then what it was given."""


def _unavailable(message: str) -> ApiError:
    return unavailable(f"{message}; a repeated DELETE completes the erasure")
