"""The mesh's RabbitMQ topology, declared in one place.

- Two durable topic exchanges: domain events (routing key = event type) and provenance.
- One direct exchange for RPC requests per serving service (`imagemesh.rpc.<service>`):
  unroutable (no server ever declared the route) fails the call at once instead of
  waiting for a timeout, and only that service may bind queues to it (read on the
  exchange), so no other service's user can take copies of its requests.
- Retries: a message whose handler failed waits in one of its queue's delay queues
  (`<queue>.delay.<seconds>s`, one per back-off tier, quorum, per-queue TTL) and is then
  dead-lettered to the direct `imagemesh.retry` exchange, where only its own queue is bound
  under its name: other consumers of the original event never see the retry.
- One direct dead-letter exchange: each queue dead-letters (delivery limit exceeded, or
  parked by its consumer after its last attempt) to its own parking-lot queue
  `<queue>.parking`, which operators see in the management console.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pydantic import BaseModel

from . import contracts as c
from ._settings import BrokerSettings
from .events import ExchangeKind

Req = TypeVar("Req", bound=BaseModel)
Rep = TypeVar("Rep", bound=BaseModel)

RPC_EXCHANGE_PREFIX = "imagemesh.rpc"
"""RPC requests go to `imagemesh.rpc.<serving service>` (see `RpcRoute.exchange`)."""
REPLY_EXCHANGE = "imagemesh.reply"
"""RPC replies: each caller binds its reply queue under the queue's own name."""
DELAY_EXCHANGE = "imagemesh.delay"
"""Messages to retry later: each delay queue is bound under its own name. With it and the
reply exchange, no service needs to publish to the default exchange (which reaches every
queue by name, whatever the permissions on the mesh's exchanges say)."""
RETRY_EXCHANGE = "imagemesh.retry"
DEAD_LETTER_EXCHANGE = "imagemesh.dead-letter"
DEFAULT_DELIVERY_LIMIT = 5
"""RabbitMQ 3.10 quorum queues have no default limit: a message that crashes its consumer
would be redelivered forever. After this many deliveries it is dead-lettered to parking."""


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A quorum work queue shared by all replicas of one consumer (competing consumers)."""

    name: str
    bindings: tuple[tuple[ExchangeKind, str], ...]
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    @property
    def parking_name(self) -> str:
        return parking_name(self.name)

    def delay_name(self, seconds: float) -> str:
        return f"{self.name}.delay.{seconds:g}s"

    def arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": self.name,
            "x-delivery-limit": self.delivery_limit,
        }


@dataclass(frozen=True, slots=True)
class RpcRoute(Generic[Req, Rep]):
    """A request queue served by one service. Classic, durable, not replicated: a request
    lives at most as long as its caller waits (it carries that as its expiration).

    `name` is `<serving service>.<route>`; `callers` are the services that may call it
    (the server refuses anyone else's request, by the request's AMQP `user_id`).
    `request` and `reply` are the models of what it takes and answers (`contracts`), both
    checked on receipt; `payload` says whether raw bytes travel beside them (an image)."""

    name: str
    callers: tuple[str, ...]
    request: type[Req]
    reply: type[Rep]
    payload: bool = False

    @property
    def server(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def exchange(self) -> str:
        return rpc_exchange(self.server)

    @property
    def queue_name(self) -> str:
        return f"rpc.{self.name}"

    @property
    def parking_name(self) -> str:
        return parking_name(self.queue_name)


def parking_name(queue: str) -> str:
    return f"{queue}.parking"


def rpc_exchange(server: str) -> str:
    return f"{RPC_EXCHANGE_PREFIX}.{server}"


# The work queues and RPC routes of the mesh.
RUNNER_UPLOADS = QueueSpec("imageproc_runner.image-uploaded", (("events", "image.uploaded"),))
PROVENANCE_EVENTS = QueueSpec("provenancedb.events", (("events", "#"), ("provenance", "#")))
UPLOAD_WEBHOOKS = QueueSpec(
    "upload.webhooks",
    (
        ("events", "image.processed"),
        ("events", "image.reused"),
        ("events", "job.failed"),
        ("events", "job.cancelled"),
    ),
)
"""Every job's end, for upload to POST to the job's `callback_url` when it has one
(`upload/webhooks.py`): a failed delivery is retried through this queue's delay queues
and parked in `upload.webhooks.parking` after the last attempt."""
IMAGEPROC_RUN = RpcRoute(
    "imageproc.run",
    callers=("imageproc_runner",),
    request=c.RunRequest,
    reply=c.RunReply,
    payload=True,
)
IMAGEPROC_ENGINE = RpcRoute(
    "imageproc.engine", callers=("imageproc_runner",), request=c.EngineRequest, reply=c.EngineReply
)
"""What imageproc computes with (versions): the runner's reuse key, learnt without work."""


def _asked_by_upload(name: str, request: type[Req], reply: type[Rep]) -> RpcRoute[Req, Rep]:
    """A provenancedb route: only upload may call it (for the principals it serves)."""
    return RpcRoute(f"provenancedb.{name}", callers=("upload",), request=request, reply=reply)


PROVENANCE_RECORD = _asked_by_upload("record", c.RecordRequest, c.RecordReply)
PROVENANCE_JOB_STATUS = _asked_by_upload("job-status", c.JobRequest, c.FoundJob)
PROVENANCE_JOB_PROV = _asked_by_upload("job-provenance", c.JobRequest, c.FoundDocument)
PROVENANCE_LINEAGE = _asked_by_upload("lineage", c.LineageRequest, c.FoundLineage)
PROVENANCE_JOBS = _asked_by_upload("jobs", c.JobsRequest, c.JobPage)
PROVENANCE_JOB_COUNTS = _asked_by_upload("job-counts", c.JobCountsRequest, c.JobCounts)
PROVENANCE_JOB_OBJECTS = _asked_by_upload("job-objects", c.JobRequest, c.JobObjects)
"""A job's stored objects and the other jobs (not erased) using each: what an erasure may
delete (`upload/erase.py`)."""

ALL_QUEUES = (RUNNER_UPLOADS, PROVENANCE_EVENTS, UPLOAD_WEBHOOKS)
ALL_ROUTES: tuple[RpcRoute[Any, Any], ...] = (
    IMAGEPROC_RUN,
    IMAGEPROC_ENGINE,
    PROVENANCE_RECORD,
    PROVENANCE_JOB_STATUS,
    PROVENANCE_JOB_PROV,
    PROVENANCE_LINEAGE,
    PROVENANCE_JOBS,
    PROVENANCE_JOB_COUNTS,
    PROVENANCE_JOB_OBJECTS,
)


def exchange_name(settings: BrokerSettings, kind: ExchangeKind) -> str:
    return settings.amqp_exchange_events if kind == "events" else settings.amqp_exchange_prov


EXCHANGE_TYPES = {
    **{route.exchange: ExchangeType.DIRECT for route in ALL_ROUTES},
    REPLY_EXCHANGE: ExchangeType.DIRECT,
    DELAY_EXCHANGE: ExchangeType.DIRECT,
    RETRY_EXCHANGE: ExchangeType.DIRECT,
    DEAD_LETTER_EXCHANGE: ExchangeType.DIRECT,
}


def exchanges(settings: BrokerSettings) -> dict[str, ExchangeType]:
    """Every exchange of the mesh and its type."""
    return {
        settings.amqp_exchange_events: ExchangeType.TOPIC,
        settings.amqp_exchange_prov: ExchangeType.TOPIC,
        **EXCHANGE_TYPES,
    }


async def declare_exchanges(
    channel: AbstractChannel, settings: BrokerSettings, *, passive: bool = False
) -> dict[str, AbstractExchange]:
    """Declare every exchange (idempotent); return them by name. `passive` only checks
    they exist: a service without configure permission on them (they are provisioned)."""
    declared = {}
    for name, kind in exchanges(settings).items():
        declared[name] = await channel.declare_exchange(name, kind, durable=True, passive=passive)
    return declared


async def declare_work_queue(
    channel: AbstractChannel, settings: BrokerSettings, spec: QueueSpec
) -> AbstractQueue:
    """Declare a work queue, its bindings, its delay queues and its parking lot (idempotent)."""
    await _declare_parking(channel, spec.name)
    queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments())
    for kind, routing_key in spec.bindings:
        await queue.bind(exchange_name(settings, kind), routing_key=routing_key)
    await queue.bind(RETRY_EXCHANGE, routing_key=spec.name)
    for seconds in settings.amqp_retry_delays:
        delay = await channel.declare_queue(
            spec.delay_name(seconds),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": round(seconds * 1000),
                "x-dead-letter-exchange": RETRY_EXCHANGE,
                "x-dead-letter-routing-key": spec.name,
            },
        )
        await delay.bind(DELAY_EXCHANGE, routing_key=delay.name)
    return queue


LIVE_QUEUE_ARGUMENTS: dict[str, Any] = {
    # A live view that falls behind loses the oldest events, not the broker's memory.
    "x-message-ttl": 60_000,
    "x-max-length": 10_000,
    "x-overflow": "drop-head",
}


EVERY_EVENT: tuple[tuple[ExchangeKind, str], ...] = (("events", "#"), ("provenance", "#"))
CANCEL_REQUESTS: tuple[tuple[ExchangeKind, str], ...] = (("events", "job.cancel-requested"),)
"""What each runner and imageproc replica follows live: every replica must learn of every
cancellation (the job may wait in the shared queue for any runner, or run on any
imageproc), so not a work queue."""
CANCEL_WATCHERS = ("imageproc_runner", "imageproc")
"""The services that follow `CANCEL_REQUESTS` (read on the events exchange)."""


async def declare_live_queue(
    channel: AbstractChannel,
    settings: BrokerSettings,
    name: str,
    bindings: tuple[tuple[ExchangeKind, str], ...] = EVERY_EVENT,
) -> AbstractQueue:
    """A process's own live copy of the events `bindings` name (every event by default,
    for progress streams): exclusive and deleted with its connection; classic, not
    durable. Not a work queue: nothing on it is work, and a watcher that misses events
    reads the state again."""
    queue = await channel.declare_queue(
        name, exclusive=True, auto_delete=True, arguments=LIVE_QUEUE_ARGUMENTS
    )
    for kind, routing_key in bindings:
        await queue.bind(exchange_name(settings, kind), routing_key=routing_key)
    return queue


async def _declare_parking(channel: AbstractChannel, queue: str) -> None:
    parking = await channel.declare_queue(
        parking_name(queue), durable=True, arguments={"x-queue-type": "quorum"}
    )
    await parking.bind(DEAD_LETTER_EXCHANGE, routing_key=queue)


async def declare_rpc_queue(channel: AbstractChannel, route: RpcRoute[Any, Any]) -> AbstractQueue:
    # Requests that cannot be answered (no reply_to) are parked, not dropped.
    await _declare_parking(channel, route.queue_name)
    queue = await channel.declare_queue(
        route.queue_name, durable=True, arguments={"x-queue-type": "classic"}
    )
    await queue.bind(route.exchange, routing_key=route.name)
    return queue
