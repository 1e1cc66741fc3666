"""Jobs as the API sees them: submitted through the mesh, looked up in provenance."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from messaging import Broker, RpcError, RpcUnavailable, topology
from messaging.contracts import JobCountsRequest, JobRequest, JobsRequest, LineageRequest
from messaging.events import ClientInfo, ImageRef
from messaging.rpc import validation_message
from objectstore import ObjectNotFound, ObjectStore

from . import content_types
from .errors import ApiError
from .gone import refuse_erased, refuse_missing
from .guard import Principal
from .intake import Upload
from .job_ids import accepted_recently, new_job_id
from .live import LiveJobs
from .publishing import RETRY_AFTER_SECONDS as RETRY_AFTER_SECONDS  # control, erase use it
from .publishing import Intake, IntakePublisher, unavailable
from .spool import Spool
from .waiting import WaitingCap

log = structlog.get_logger("upload")
Req = TypeVar("Req", bound=BaseModel)
Rep = TypeVar("Rep", bound=BaseModel)
QUEUE_CHECK_INTERVAL = 1.0
"""Seconds a queue-depth reading is reused: one broker round trip per second at most."""
LIVE_FRESH_SECONDS = 5.0
"""How long an unfinished status seen live is trusted without news (`LiveJobs.status`)."""
ARRIVAL_WAIT_SECONDS = 2.0
"""How long a read of a job accepted moments ago waits for its intake to pass."""


class Jobs:
    def __init__(
        self,
        broker: Broker,
        store: ObjectStore,
        *,
        input_bucket: str,
        rpc_timeout: float,
        max_queued: int,
        max_queued_per_principal: int = 100,
        live: LiveJobs | None = None,
    ) -> None:
        self._broker = broker
        self._live = live
        self._store = store
        self._input_bucket = input_bucket
        self._rpc_timeout = rpc_timeout
        self._max_queued = max_queued
        self._queued = (0, -QUEUE_CHECK_INTERVAL)  # (ready messages, when checked)
        self._waiting_cap = WaitingCap(max_queued_per_principal, self._queued_of)
        self._intake = IntakePublisher(broker, live)

    async def close(self) -> None:
        """Stop publishing in the background (at shutdown): `IntakePublisher.close`."""
        await self._intake.close()

    async def admit(self, principal: str) -> None:
        """Backpressure: refuse a new job while the broker blocks publishers or too many
        jobs already wait (503), or too many of `principal`'s own (429, `waiting.py`).
        Also refuses while no runner queue exists, where an upload event would reach
        provenancedb alone and never be processed."""
        if not await self._broker.accepts_publishes():
            raise unavailable("the message broker is not accepting new work right now")
        waiting = await self._waiting()
        if waiting > self._max_queued:
            raise ApiError(
                503,
                "busy",
                f"{waiting} jobs are waiting to be processed; try again shortly",
                retry_after=RETRY_AFTER_SECONDS,
            )
        await self._waiting_cap.admit(principal)

    async def _queued_of(self, principal: str) -> int:
        """How many of `principal`'s jobs wait (queued, not started): from the events this
        replica follows live (`LiveJobs.waiting`), which costs nothing; from provenance
        only without them. A provenance count reads its `jobs` view, and each read brings
        the view up to date with every document written since: on PouchDB Server ~7 ms of
        indexing per job, paid on the submission path."""
        if self._live is not None:
            return self._live.waiting(principal)
        try:
            reply, _ = await self._broker.call(
                topology.PROVENANCE_JOB_COUNTS,
                JobCountsRequest(owner=principal),
                timeout=self._rpc_timeout,
            )
        except RpcUnavailable:
            # Nobody serves the count (a provenancedb older than this upload, mid-upgrade):
            # admit rather than refuse everyone; the global cap still holds.
            log.warning("waiting_cap_unavailable", principal=principal)
            return 0
        except RpcError as exc:
            log.warning("provenance_unavailable", route="job-counts", code=exc.code)
            raise unavailable("the provenance service is unavailable") from exc
        return reply.queued

    async def _waiting(self) -> int:
        count, checked = self._queued
        now = time.monotonic()
        if now - checked < QUEUE_CHECK_INTERVAL:
            return count
        try:
            count, _ = await self._broker.queue_depth(topology.RUNNER_UPLOADS.name)
        except Exception as exc:
            log.warning("runner_queue_unavailable", error=repr(exc))
            raise unavailable("no image runner is set up yet") from exc
        self._queued = (count, now)
        return count

    async def submit(self, upload: Upload, client: ClientInfo, principal: str) -> str:
        """Store the input, record the job for its owner `principal`, queue it. Returns
        the job id."""
        job_id = new_job_id()
        with structlog.contextvars.bound_contextvars(job_id=job_id):
            image, new = await self._store_input(upload)
            intake = Intake(
                job_id,
                image,
                upload.pipeline,
                upload.filename,
                principal,
                client,
                input_new=new,
                callback_url=upload.callback_url,
            )
            await self._intake.publish(intake)
            log.info(
                "job_accepted",
                principal=principal,
                input=image.uri,
                bytes=image.bytes,
                ops=len(upload.pipeline),
            )
        return job_id

    async def retry(
        self,
        job: dict[str, Any],
        pipeline: list[dict[str, Any]],
        client: ClientInfo,
        principal: str,
    ) -> str:
        """A new job of `principal`'s on the stored input of `job` (failed or cancelled,
        checked by the caller), with `pipeline`, linked both ways (`publishing.py`): 410
        when the input is no longer in the store. Returns the new job's id."""
        image = ImageRef.model_validate(job["input_ref"])
        await self._still_stored(image, job["id"])
        job_id = new_job_id()
        with structlog.contextvars.bound_contextvars(job_id=job_id):
            filename = job.get("filename")
            intake = Intake(
                job_id,
                image,
                pipeline,
                filename,
                principal,
                client,
                retry_of=job["id"],
                callback_url=job.get("callback_ref"),  # told of its end as the job was
            )
            await self._intake.publish(intake)
            log.info("job_retried", retry_of=job["id"], principal=principal, ops=len(pipeline))
        return job_id

    async def _still_stored(self, image: ImageRef, job_id: str) -> None:
        """One HEAD of the input: a retry never queues a job whose input is gone (erased)."""
        try:
            await self._store.metadata(image.bucket, image.key)
        except ObjectNotFound as exc:
            raise ApiError(
                410, "gone", f"the input of job {job_id} is no longer stored: it cannot be retried"
            ) from exc
        except Exception as exc:
            log.exception("input_head_failed", job_id=job_id, input=image.uri)
            raise unavailable("the image store is unavailable") from exc

    async def _store_input(self, upload: Upload) -> tuple[ImageRef, bool]:
        """Store the input (unless the same bytes are stored already); whether this stored
        it, i.e. whether the bytes are new to the store."""
        # Content-addressed: the user influences nothing of the key but the bytes.
        key = f"sha256/{upload.sha256}{upload.info.format.extension}"
        content_type = upload.info.format.content_type
        try:
            # Streamed from the spool: never the whole file in memory. One conditional
            # request: bytes stored already are left as they are.
            new = await self._store.put_file(
                self._input_bucket,
                key,
                upload.spool.reader(),
                size=upload.size,
                content_type=content_type,
                if_absent=True,
            )
        except Exception as exc:
            log.exception("input_store_failed")
            raise unavailable("the image store is unavailable") from exc
        image = ImageRef(
            bucket=self._input_bucket,
            key=key,
            content_type=content_type,
            **upload.measured(),
        )
        return image, new

    async def status(self, job_id: str) -> dict[str, Any] | None:
        """The job's status: from the events this replica saw live when they are recent
        (`LIVE_FRESH_SECONDS`) or final, else from provenance, with the marks (retried,
        erased) seen live on top. A job accepted moments
        ago that neither knows yet (another replica accepted it; provenance records the
        intake concurrently) is waited for briefly: never 404 for an accepted job."""
        if self._live is None:
            return await self.recorded_status(job_id)
        seen = self._live.status(job_id, fresh=LIVE_FRESH_SECONDS)
        if seen is not None:
            return seen
        job = await self.recorded_status(job_id)
        if job is None and accepted_recently(job_id):
            if await self._live.wait_seen(job_id, ARRIVAL_WAIT_SECONDS):
                return self._live.status(job_id)
            job = await self.recorded_status(job_id)
        # Provenance may not have recorded a mark this replica saw (or made) moments ago.
        return job if job is None else self._live.annotated(job)

    async def recorded_status(self, job_id: str) -> dict[str, Any] | None:
        """The job's status as provenance has recorded it."""
        reply = await self._call(topology.PROVENANCE_JOB_STATUS, JobRequest(job_id=job_id), job_id)
        return reply.job

    def live_starting_with(self, prefix: str, owner: str | None) -> list[str]:
        """Jobs this replica saw live whose id starts with `prefix` (`LiveJobs`)."""
        return [] if self._live is None else self._live.starting_with(prefix, owner)

    async def readable(self, job_id: str, reader: Principal) -> dict[str, Any] | None:
        """The job's status if `reader` may see it (its owner, or an auditor); else None,
        as for a job that does not exist: another's job is not found (404), not forbidden."""
        job = await self.status(job_id)
        return job if job is not None and reader.may_read(job.get("owner")) else None

    async def owned(self, job_id: str, owner: Principal, action: str) -> dict[str, Any]:
        """The job's status if `owner` owns it, to `action` it (cancel, retry, erase): an
        unknown job or another's is 404 as on every job route; an auditor, who reads every
        job but acts on none, gets 403."""
        job = await self.readable(job_id, owner)
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id}")
        if job.get("owner") != owner.name:
            raise ApiError(403, "forbidden", f"only the job's owner may {action} it")
        return job

    async def recent(
        self,
        *,
        status: str | None,
        limit: int,
        before: str | None,
        owner: str | None,
        search: str | None = None,
    ) -> dict[str, Any]:
        """Recent jobs, newest first: {"jobs": [...], "next": cursor or None}; only
        `owner`'s (None: everyone's, for auditors); with `search`, only those it finds."""
        try:
            request = JobsRequest.model_validate(
                {
                    "status": status,
                    "limit": limit,
                    "before": before,
                    "owner": owner,
                    "search": search,
                }
            )
        except ValidationError as exc:
            raise ApiError(400, "bad_request", validation_message(exc)) from exc
        reply = await self._call(topology.PROVENANCE_JOBS, request, None)
        return {"jobs": [public(job) for job in reply.jobs], "next": reply.next}

    async def input(self, job_id: str, reader: Principal) -> tuple[dict[str, Any], str]:
        """Where the job's input is stored, and its content type (410 once erased)."""
        job = await self.readable(job_id, reader)
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id}")
        refuse_erased(job)
        if not (source := job.get("input_ref")):
            raise ApiError(404, "not_found", f"job {job_id} has no stored input")
        return source, content_types.input_content_type(source)

    async def provenance(self, job_id: str) -> dict[str, Any] | None:
        """The job's W3C PROV-JSON document, or None for an unknown job."""
        reply = await self._call(topology.PROVENANCE_JOB_PROV, JobRequest(job_id=job_id), job_id)
        return reply.document if reply.found else None

    async def lineage(self, sha256: str, owner: str | None) -> dict[str, Any] | None:
        """Ancestors and descendants of an image through `owner`'s jobs (None: everyone's),
        or None when provenance never saw it in them."""
        try:
            request = LineageRequest(sha256=sha256, owner=owner)
        except ValidationError as exc:
            raise ApiError(400, "bad_request", validation_message(exc)) from exc
        reply = await self._call(topology.PROVENANCE_LINEAGE, request, None)
        return reply.lineage

    async def result(self, job_id: str, reader: Principal) -> tuple[dict[str, Any], str]:
        """Where the job's output is stored, and its content type."""
        output: dict[str, Any] = (await self.succeeded(job_id, reader))["output_ref"]
        return output, content_types.content_type(output)

    async def succeeded(self, job_id: str, reader: Principal) -> dict[str, Any]:
        """The job, with its `output_ref`, if `reader` may read it and it succeeded: else
        404 (unknown, or another's: the same answer), 410 `gone` (erased), 409 `job_failed`
        or `not_finished`. The one check of every way to a result (/result, results.zip)."""
        # A finished job seen live needs no provenance query: its status does not change.
        job = await self.status(job_id)
        if job is None or not reader.may_read(job.get("owner")):
            raise ApiError(404, "not_found", f"no job {job_id}")
        refuse_erased(job)
        if job["status"] == "failed":
            raise ApiError(409, "job_failed", f"the job failed: {job['error']['message']}")
        if job["status"] == "cancelled":
            raise ApiError(409, "job_cancelled", f"the job was cancelled by {job['cancelled_by']}")
        if job["status"] != "succeeded":
            raise ApiError(409, "not_finished", f"the job is {job['status']}; try again later")
        return job

    @asynccontextmanager
    async def fetched(self, image: dict[str, Any], spool: Spool) -> AsyncIterator[Spool]:
        """A stored image, read from S3 at S3's pace into `spool` (memory up to its limit,
        the rest on disk), so that the S3 connection is free again however slowly the
        client then reads it; 410 if S3 no longer has it, 503 if it cannot give it."""
        uri = f"s3://{image['bucket']}/{image['key']}"
        try:
            async with self._store.download(image["bucket"], image["key"]) as download:
                async for chunk in download.chunks:
                    await spool.write(chunk)
            await spool.finish()
        except Exception as exc:
            spool.close()
            refuse_missing(exc, uri)  # 410: erased meanwhile (the status may not say yet)
            log.exception("image_fetch_failed", uri=uri)
            raise unavailable("the image store is unavailable") from exc
        try:
            yield spool
        finally:
            spool.close()

    async def _call(
        self, route: topology.RpcRoute[Req, Rep], request: Req, job_id: str | None
    ) -> Rep:
        try:
            reply, _ = await self._broker.call(
                route, request, timeout=self._rpc_timeout, job_id=job_id
            )
        except RpcError as exc:
            if exc.code == "bad_request":  # the question itself was wrong: the client's
                raise ApiError(400, "bad_request", exc.message) from exc
            log.warning(
                "provenance_unavailable", route=route.name, code=exc.code, reason=exc.message
            )
            raise unavailable("the provenance service is unavailable") from exc
        return reply


def public(job: dict[str, Any]) -> dict[str, Any]:
    """The job as the API shows it: without where its images are stored."""
    return {name: value for name, value in job.items() if not name.endswith("_ref")}
