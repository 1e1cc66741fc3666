"""The fault-injection harness: a batch of real jobs, an optional fault in the middle, and
the end-state every fault test asserts.

    batch = Batch(mesh, http)
    await batch.run(n=30, fault=some_fault)   # submit, inject the fault after ~1/3, wait
    await batch.verify()                      # one output, one document per event, queues

The client behaves like a well-mannered real one: a `503` is retried after its
`Retry-After`, a refused connection (a restarting upload service) after a short pause,
all within one overall deadline. Nothing here sleeps to synchronise: every wait is a
deadline-bounded poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aio_pika
import aioboto3
import aiohttp
import stack
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from botocore.config import Config
from PIL import Image

from messaging import BrokerSettings
from messaging.constants import FINAL_STATUSES
from messaging.thumbnails import THUMBNAIL_PREFIX
from provenancedb.audit import REUSE_INDEX_PREFIX, Gap, job_gaps
from tests.conftest import SERVICES, Mesh, all_documents, audit_env, management, settings_from
from tests.e2e.helpers import UPLOADS_AT_ONCE
from tests.faults.conftest import diagnostics
from tests.waiting import Deadline, async_wait_for
from tests.waiting import DeadlineExceeded as DeadlineExceeded  # the tests catch it

THUMBNAIL = json.dumps([{"op": "thumbnail", "width": 64, "height": 64}])
PARK_ERROR_HEADER = "x-imagemesh-error"
EXTENSIONS = {"jpeg": "jpg", "png": "png"}

Fault = Callable[[], Coroutine[Any, Any, None]]


def image(index: int) -> tuple[bytes, str]:
    """A small, unique, photo-like image (random noise: bytes no earlier job had, so every
    job computes, none reuses an earlier output); even indexes are PNG, odd ones JPEG."""
    fmt = "PNG" if index % 2 == 0 else "JPEG"
    width, height = 160 + 7 * (index % 13), 120 + 5 * (index % 11)
    rng = random.Random(index)
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 20 + rng.randint(0, 40))
    merged = Image.merge("RGB", (gradient, noise, gradient.rotate(90).resize((width, height))))
    buffer = io.BytesIO()
    merged.save(buffer, fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    return buffer.getvalue(), fmt.lower()


# --------------------------------------------------------------------------- the client


@dataclass
class Client:
    """The public API as a patient client uses it: 503s and refused connections retried."""

    http: aiohttp.ClientSession
    base: str
    deadline: Deadline
    retried_503: int = 0
    refused: int = 0
    ambiguous_posts: int = 0
    """POSTs whose answer was lost (timeout, dropped connection): the job may exist anyway."""
    slowest: float = 0.0
    """The longest single request (seconds): how long a client was kept waiting."""
    errors: Counter[str] = field(default_factory=Counter)
    """Connection-level failures seen (and retried), by exception class."""

    async def _request(self, method: str, path: str, make_body: Callable[[], Any] | None) -> Any:
        url = f"{self.base}{path}"
        while True:
            self.deadline.check(f"{method} {path}")
            started = time.monotonic()
            try:
                data = make_body() if make_body else None
                async with self.http.request(method, url, data=data) as response:
                    self.slowest = max(self.slowest, time.monotonic() - started)
                    if response.status == 503:
                        self.retried_503 += 1
                        pause = float(response.headers.get("Retry-After", "1"))
                        await asyncio.sleep(max(0.1, min(pause, self.deadline.remaining)))
                        continue
                    text = await response.text()
                    assert response.status in (200, 202), (
                        f"{method} {path}: {response.status} {text}"
                    )
                    return json.loads(text)
            except aiohttp.ClientConnectorError:
                # Refused: nothing was sent, retrying cannot create a second job.
                self.refused += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The request may have reached the server: a POST may have created a job.
                self.errors[f"{method} {type(exc).__name__}"] += 1
                if method == "POST":
                    self.ambiguous_posts += 1
            await asyncio.sleep(0.5)

    async def submit(self, data: bytes, fmt: str, pipeline: str = THUMBNAIL) -> str:
        def form() -> aiohttp.FormData:
            body = aiohttp.FormData()
            body.add_field(
                "file", data, filename=f"image.{fmt}", content_type="application/octet-stream"
            )
            body.add_field("pipeline", pipeline)
            return body

        answer = await self._request("POST", "/api/v1/jobs", form)
        return str(answer["id"])

    async def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = await self._request("GET", f"/api/v1/jobs/{job_id}", None)
        return job


# --------------------------------------------------------------------------- the batch


@dataclass
class Batch:
    mesh: Mesh
    http: aiohttp.ClientSession
    timeout: float = 75.0
    """Overall deadline: submitting, the fault, and every job reaching a terminal state."""
    concurrency: int = 4
    ids: list[str] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    submitted_at: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """What the fault observed, for the summary."""

    def __post_init__(self) -> None:
        self.deadline = Deadline(self.timeout)
        self.client = Client(self.http, self.mesh.upload_url, self.deadline)
        self._next = 0

    async def submit(
        self, count: int, *, interval: float = 0.0, concurrency: int | None = None
    ) -> list[str]:
        """Submit `count` more jobs (at most `concurrency` at once, one started every
        `interval` seconds); returns their ids once all were accepted."""
        semaphore = asyncio.Semaphore(concurrency or self.concurrency)
        indexes = list(range(self._next, self._next + count))
        self._next += count

        async def one(index: int, delay: float) -> str:
            await asyncio.sleep(delay)
            async with semaphore:
                data, fmt = image(index)
                job_id = await self.client.submit(data, fmt)
            self.submitted_at[job_id] = time.monotonic()
            self.ids.append(job_id)
            return job_id

        return list(await asyncio.gather(*(one(i, n * interval) for n, i in enumerate(indexes))))

    async def run(self, n: int = 30, *, fault: Fault | None = None, interval: float = 0.1) -> None:
        """Submit `n` jobs: the first third at once (a burst, so the workers have a backlog),
        then the rest one every `interval` s, with `fault` injected meanwhile; then wait
        until the fault is over and every job is terminal."""
        started = time.monotonic()
        first = n // 3
        # As fast as upload takes them from one client (past its cap on uploads in
        # progress it answers 429): uploads take milliseconds, so still a burst.
        await self.submit(first, concurrency=min(first, UPLOADS_AT_ONCE))
        if fault is None:
            await self.submit(n - first, interval=interval)
        else:
            fault_task = asyncio.create_task(fault())
            try:
                await self.submit(n - first, interval=interval)
            finally:
                # The fault always finishes (and undoes itself), even when submitting failed.
                await fault_task
            self.timings["fault_done"] = round(time.monotonic() - started, 1)
        self.timings["submitted"] = round(time.monotonic() - started, 1)
        await self.wait_terminal()
        self.timings["terminal"] = round(time.monotonic() - started, 1)

    async def wait_terminal(self) -> None:
        """Poll every job until each is succeeded or failed (within the batch's deadline)."""
        pending = [job_id for job_id in self.ids if job_id not in self.jobs]
        last: dict[str, str] = {}
        while pending:
            if self.deadline.remaining <= 0:
                states = Counter(last.get(job_id, "?") for job_id in pending)
                raise DeadlineExceeded(
                    f"{len(pending)} of {len(self.ids)} jobs not terminal after "
                    f"{self.timeout:g} s, still {dict(states)}: {pending[:5]}\n{self.summary()}"
                )
            try:
                answers = await asyncio.gather(*(self.client.job(job_id) for job_id in pending))
            except DeadlineExceeded:
                continue  # reported above, with the jobs' last states
            for job in answers:
                last[job["id"]] = job["status"]
                if job["status"] in FINAL_STATUSES:
                    self.jobs[job["id"]] = job
            pending = [job_id for job_id in pending if job_id not in self.jobs]
            if pending:
                await asyncio.sleep(0.25)

    # ----------------------------------------------------------------------- verification

    async def verify(
        self,
        *,
        expect_status: Callable[[dict[str, Any]], bool] = lambda job: job["status"] == "succeeded",
        expect_parked: Mapping[str, int] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """The end-state every fault test asserts (see the module docstring)."""
        try:
            await self._verify(expect_status, dict(expect_parked or {}), timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.summary()}\n{diagnostics(self.mesh)}") from None

    async def _verify(
        self,
        expect_status: Callable[[dict[str, Any]], bool],
        expect_parked: dict[str, int],
        timeout: float,
    ) -> None:
        unexpected = {j: job["status"] for j, job in self.jobs.items() if not expect_status(job)}
        assert not unexpected, f"{len(unexpected)} jobs ended unexpectedly: " + "; ".join(
            f"{j}: {self.jobs[j]['status']} {self.jobs[j].get('error')}"
            for j in list(unexpected)[:5]
        )
        await self._verify_outputs()
        await async_wait_for(
            self._documents_complete, timeout=timeout, interval=0.2, what="provenance documents"
        )
        await async_wait_for(
            lambda: self._queues_settled(expect_parked),
            timeout=timeout,
            interval=0.2,
            what="queues settled",
        )
        await self._verify_documents()

    async def _verify_outputs(self) -> None:
        keys = await list_keys(self.mesh.env, self.mesh.env["S3_OUTPUT_BUCKET"])
        by_job: dict[str, list[str]] = defaultdict(list)
        # The runner's index of computations (imageproc_runner/reuse.py) is not an output.
        # Nor are the history's thumbnails (messaging/thumbnails.py).
        for key in (
            key for key in keys if not key.startswith((REUSE_INDEX_PREFIX, THUMBNAIL_PREFIX))
        ):
            by_job[key.split("/", 1)[0]].append(key)
        for job_id, job in self.jobs.items():
            if job["status"] == "succeeded":
                expected = f"{job_id}/output.{EXTENSIONS[job['output']['format']]}"
                assert by_job.get(job_id) == [expected], (
                    f"job {job_id}: outputs {by_job.get(job_id)}, expected exactly [{expected}]"
                )
            else:
                assert job_id not in by_job, f"failed job {job_id} has outputs {by_job[job_id]}"
        strangers = set(by_job) - set(self.jobs)
        # A POST whose answer was lost may have created a job this client never heard of.
        assert len(strangers) <= self.client.ambiguous_posts, (
            f"outputs of jobs nobody submitted: {sorted(strangers)}"
        )

    def _trails(self) -> dict[str, tuple[str, list[Gap]]]:
        """(status, gaps) of every job in provenance, by the completeness check's rules."""
        by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in all_documents(self.mesh.env):
            by_job[str(doc.get("job_id"))].append(doc)
        now = datetime.now(UTC)
        return {
            job_id: job_gaps(job_id, docs, now=now, grace=float("inf"))
            for job_id, docs in by_job.items()
        }

    def _documents_complete(self) -> bool:
        trails = self._trails()
        return all(
            job_id in trails and trails[job_id][0] == job["status"] and not trails[job_id][1]
            for job_id, job in self.jobs.items()
        )

    async def _verify_documents(self) -> None:
        unknown = {job_id: status for job_id, (status, _) in self._trails().items()}
        unknown = {job_id: s for job_id, s in unknown.items() if job_id not in self.jobs}
        if unknown:
            # Jobs recorded in provenance whose id never reached this client (a 202 lost, or
            # a job recorded but answered 503): noted, not failed; see the report.
            self.notes.append(f"jobs in provenance unknown to the client: {unknown}")
        # The completeness check, as an operator runs it: every job in provenance (known to
        # this client or not) has its whole trail, every output its provenance.
        report = await audit_env(self.mesh.env)
        self.notes.append(f"audit: {report.summary()}")
        assert not report.gaps, f"the completeness check found gaps:\n{report.summary()}"

    def _queues_settled(self, expect_parked: dict[str, int]) -> bool:
        counts = queue_details(self.mesh.env)
        self.last_queues = counts
        for name, (messages, unacked) in counts.items():
            if name.endswith(".parking"):
                if messages != expect_parked.get(name, 0):
                    return False
            elif messages or unacked:
                return False
        return all(name in counts for name in expect_parked)

    def summary(self) -> str:
        """One paragraph on how the batch went: printed by every test, shown on failure."""
        states = Counter(job["status"] for job in self.jobs.values())
        queues = getattr(self, "last_queues", None)
        return (
            f"batch: {len(self.ids)} submitted, terminal {dict(states)}, "
            f"503 retried {self.client.retried_503}, refused {self.client.refused}, "
            f"ambiguous POSTs {self.client.ambiguous_posts}, errors {dict(self.client.errors)}, "
            f"slowest request {self.client.slowest:.1f} s, timings {self.timings}\n"
            f"log events: {log_events(self.mesh)}"
            + (f"\nnotes: {self.notes}" if self.notes else "")
            + (f"\nlast queue counts (messages, unacked): {queues}" if queues else "")
        )


# --------------------------------------------------------------------------- observation

#: Log events that show a fault bit: retries, parking, redeliveries, reconnections.
TELLING_EVENTS = (
    "message_failed",
    "message_retry_scheduled",
    "message_parked",
    "provenance_duplicate",
    "rpc_late_reply",
    "settle_failed_after_reconnect",
    "broker_connected",
)


def log_events(mesh: Mesh) -> dict[str, dict[str, int]]:
    """Per service, how often each telling event was logged (JSON log lines)."""
    found: dict[str, dict[str, int]] = {}
    for name in SERVICES:
        counts: Counter[str] = Counter()
        for line in mesh.log_tail(name, 100_000).splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    event = json.loads(line).get("event")
                    if event in TELLING_EVENTS:
                        counts[event] += 1
        found[name] = dict(counts)
    return found


async def wait_backlog(env: Mapping[str, str], queue: str, *, timeout: float) -> bool:
    """Wait until `queue` has messages ready: its consumers hold all they may (prefetch),
    so a fault injected now hits work in flight. Ready counts come from a passive
    declare, exact and immediate (the management API's lag seconds behind).
    False if no backlog formed within `timeout`."""
    deadline = Deadline(timeout)
    async with amqp(env) as connection:
        channel = await connection.channel()
        while deadline.remaining > 0:
            declared = await channel.declare_queue(queue, passive=True)
            if declared.declaration_result.message_count:
                return True
            await asyncio.sleep(0.01)
    return False


def queue_details(env: Mapping[str, str]) -> dict[str, tuple[int, int]]:
    """(messages, unacked) per queue of the vhost, from the management API."""
    queues = management(dict(env), "GET", f"/api/queues/{quote(env['RABBITMQ_VHOST'], safe='')}")
    return {
        q["name"]: (int(q.get("messages", 0)), int(q.get("messages_unacknowledged", 0)))
        for q in queues
    }


@contextlib.asynccontextmanager
async def s3_client(env: Mapping[str, str]) -> AsyncIterator[Any]:
    session = aioboto3.Session()
    config = Config(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=5,
        read_timeout=10,
    )
    async with session.client(
        "s3",
        endpoint_url=env["S3_URL"],
        aws_access_key_id=env["S3_ACCESS_KEY"],
        aws_secret_access_key=env["S3_SECRET_KEY"],
        region_name=env["S3_REGION"],
        config=config,
    ) as client:
        yield client


async def list_keys(env: Mapping[str, str], bucket: str) -> list[str]:
    keys: list[str] = []
    async with s3_client(env) as client:
        async for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


@contextlib.asynccontextmanager
async def amqp(env: Mapping[str, str]) -> AsyncIterator[AbstractConnection]:
    """A connection to the test's vhost, with the mesh's credentials."""
    settings: BrokerSettings = settings_from(dict(env), BrokerSettings)
    connection = await aio_pika.connect(settings.amqp_url())
    try:
        yield connection
    finally:
        await connection.close()


async def drain_parking(
    env: Mapping[str, str], queue: str, *, expect: int, timeout: float = 30.0
) -> list[AbstractIncomingMessage]:
    """Wait until `expect` messages were parked in `queue`; take them out and return them."""
    taken: list[AbstractIncomingMessage] = []
    deadline = Deadline(timeout)
    async with amqp(env) as connection:
        while len(taken) < expect:
            message = await _get_one(connection, queue)
            if message is not None:
                taken.append(message)
                continue
            if deadline.remaining <= 0:
                cases = [headers_of(m).get("x-fault-case") for m in taken]
                raise DeadlineExceeded(
                    f"{queue}: {len(taken)} of {expect} messages parked within {timeout:g} s "
                    f"(got {cases})"
                )
            await asyncio.sleep(0.2)
    return taken


async def _get_one(connection: AbstractConnection, queue: str) -> AbstractIncomingMessage | None:
    """One message from `queue` (acked), or None when it is empty or does not exist."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        message = await declared.get(no_ack=True, fail=False)
    except aio_pika.exceptions.ChannelClosed:
        return None  # the broker closed the channel: no such queue (yet)
    finally:
        if not channel.is_closed:
            await channel.close()
    return message


def headers_of(message: AbstractIncomingMessage) -> dict[str, str]:
    return {
        key: value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        for key, value in (message.headers or {}).items()
    }


# --------------------------------------------------------------------------- faults


def kill_service(
    mesh: Mesh, name: str, *, busy: str | None = None, notes: list[str] | None = None
) -> Fault:
    """kill -9 a service, then start a new one and wait until it is ready. With `busy`, the
    kill waits (at most 15 s) for a backlog in that queue, so that it hits work in flight;
    whether it did is noted in `notes`."""

    async def fault() -> None:
        if busy is not None:
            hit = await wait_backlog(mesh.env, busy, timeout=15)
            if notes is not None:
                notes.append(f"{name} killed {'with' if hit else 'WITHOUT'} a backlog in {busy}")
        process = mesh.processes[name]
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)
        mesh.start(name)
        await asyncio.to_thread(mesh.wait_ready, name)

    return fault


async def terminate_service(mesh: Mesh, name: str, *, within: float = 15.0) -> int | None:
    """SIGTERM a service and wait (at most `within` s) for it to exit; its exit code, or
    None if it had to be killed. Start it again and wait until it is ready."""
    process = mesh.processes[name]
    process.send_signal(signal.SIGTERM)
    try:
        code: int | None = await asyncio.to_thread(process.wait, within)
    except Exception:
        process.kill()
        await asyncio.to_thread(process.wait, 10)
        code = None
    mesh.start(name)
    await asyncio.to_thread(mesh.wait_ready, name)
    return code


def restart_rabbitmq(config: Mapping[str, str]) -> Fault:
    """Stop the (shared) RabbitMQ node and start it again; the services reconnect alone."""

    settings = stack.Config.of(config)

    async def fault() -> None:
        component = stack.rabbit_component(settings)
        try:
            await asyncio.to_thread(stack.stop_component, component)
        finally:
            await asyncio.to_thread(stack.start_rabbit, settings)
            await asyncio.to_thread(stack.wait_rabbit, settings)

    return fault


def couch_outage(config: Mapping[str, str], seconds: float) -> Fault:
    """Stop the CouchDB-compatible server, keep it down `seconds`, start it again."""

    settings = stack.Config.of(config)

    async def fault() -> None:
        component = stack.couch_component(settings)
        try:
            await asyncio.to_thread(stack.stop_component, component)
            await asyncio.sleep(seconds)  # the outage itself, while the batch goes on
        finally:
            await asyncio.to_thread(stack.start_couch, settings)
            await asyncio.to_thread(stack.wait_couch, settings)

    return fault


def s3_freeze(config: Mapping[str, str], seconds: float) -> Fault:
    """SIGSTOP the S3 server for `seconds`, then SIGCONT (moto keeps its objects in memory:
    a real stop would lose them all)."""

    settings = stack.Config.of(config)

    async def fault() -> None:
        pid = stack.s3_component(settings).pid()
        assert pid is not None, "the S3 server is not running"
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)  # the outage itself, while the batch goes on
        finally:
            os.kill(pid, signal.SIGCONT)

    return fault
