"""Fault 6: malformed messages published straight to every queue.

Whatever arrives, a consumer never crashes, never loops on a message and never drops one
silently: a work-queue message that can never be handled is parked in `<queue>.parking`
with the reason in its `x-imagemesh-error` header; a bad RPC request with a `reply_to`
gets an error reply, one without is parked in `rpc.<name>.parking` (or, at least, nothing
is left behind). A normal batch afterwards succeeds: the consumers kept going.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiohttp
import pytest
from aio_pika.abc import AbstractIncomingMessage

from messaging import RpcMessage, topology
from messaging.events import ImageRef, ImageUploaded
from messaging.rpc import ERROR_CODE_HEADER
from tests.conftest import Mesh
from tests.faults.harness import (
    PARK_ERROR_HEADER,
    Batch,
    DeadlineExceeded,
    amqp,
    drain_parking,
    headers_of,
    image,
    s3_client,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

MAX_MESSAGE_BYTES = 2 * 1024 * 1024
HUGE_BYTES = 3 * 1024 * 1024
CASES = ("bad-json", "missing-fields", "unknown-type", "no-cloudevents", "huge")
CASE_HEADER = "x-fault-case"


@pytest.fixture
def mesh_overrides() -> dict[str, str]:
    return {"AMQP_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES)}


def event_message(
    body: bytes, *, case: str, event_type: str | None, job_id: str
) -> aio_pika.Message:
    """A message as the mesh publishes one (CloudEvents attributes), or, without
    `event_type`, a bare body with no attributes at all."""
    if event_type is None:
        return aio_pika.Message(body, headers={CASE_HEADER: case})
    event_id = str(uuid.uuid4())
    source = "/imagemesh/fault-tests"
    return aio_pika.Message(
        body,
        content_type="application/json",
        message_id=event_id,
        type=event_type,
        app_id=source,
        correlation_id=job_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={
            CASE_HEADER: case,
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-type": event_type,
            "ce-source": source,
            "ce-time": datetime.now(UTC).isoformat(),
            "ce-subject": job_id,
        },
    )


async def stored_input(mesh: Mesh) -> ImageRef:
    """A real input image in the input bucket, so a message naming it is otherwise valid."""
    data, fmt = image(999)
    sha = hashlib.sha256(data).hexdigest()
    key = f"sha256/{sha}.{'jpg' if fmt == 'jpeg' else fmt}"
    bucket = mesh.env["S3_INPUT_BUCKET"]
    async with s3_client(mesh.env) as client:
        await client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=f"image/{fmt}")
    return ImageRef(
        bucket=bucket,
        key=key,
        sha256=sha,
        bytes=len(data),
        format=fmt,
        width=100,
        height=100,
        content_type=f"image/{fmt}",
    )


def uploaded(job_id: str, source: ImageRef, *, filename: str = "x.png") -> bytes:
    event = ImageUploaded(
        job_id=job_id,
        input=source,
        pipeline=[{"op": "thumbnail", "width": 64, "height": 64}],
        filename=filename,
        created_at=datetime.now(UTC),
    )
    return event.model_dump_json().encode()


def work_queue_cases(source: ImageRef) -> list[aio_pika.Message]:
    """The five malformed messages, each labelled with its case in a header."""

    def job() -> str:
        return str(uuid.uuid4())

    huge_job = job()
    # Valid in every respect but its size: only a size check can refuse it.
    huge = uploaded(huge_job, source, filename="h" * HUGE_BYTES + ".png")
    assert len(huge) > HUGE_BYTES
    return [
        event_message(
            b'{"job_id": "' + job().encode() + b'", "input": {',
            case="bad-json",
            event_type=ImageUploaded.type,
            job_id=job(),
        ),
        event_message(
            json.dumps({"job_id": (jid := job())}).encode(),
            case="missing-fields",
            event_type=ImageUploaded.type,
            job_id=jid,
        ),
        event_message(
            json.dumps({"job_id": (jid := job())}).encode(),
            case="unknown-type",
            event_type="image.teleported",
            job_id=jid,
        ),
        event_message(uploaded(job(), source), case="no-cloudevents", event_type=None, job_id=""),
        event_message(huge, case="huge", event_type=ImageUploaded.type, job_id=huge_job),
    ]


def rpc_cases(
    route: topology.RpcRoute[Any, Any], source: ImageRef
) -> list[tuple[str, aio_pika.Message]]:
    """Five bad requests for `route`, as (case, message without reply_to)."""
    job_id = str(uuid.uuid4())
    valid_image, _ = image(998)
    if route is topology.IMAGEPROC_RUN:
        unknown = RpcMessage({"pipeline": [{"op": "teleport"}]}, valid_image).to_message()
        huge = RpcMessage({"pipeline": [{"op": "grayscale"}]}, b"\xff" * HUGE_BYTES).to_message()
    elif route is topology.PROVENANCE_RECORD:
        envelope = {
            "id": str(uuid.uuid4()),
            "type": "image.teleported",
            "source": "/imagemesh/fault-tests",
            "time": datetime.now(UTC).isoformat(),
        }
        unknown = RpcMessage({"envelope": envelope, "event": {"job_id": job_id}}).to_message()
        huge = aio_pika.Message(
            json.dumps({"envelope": envelope, "event": {"job_id": "j" * HUGE_BYTES}}).encode(),
            content_type="application/json",
        )
    else:
        unknown = RpcMessage({"job_id": 12345}).to_message(type="job.teleport")
        huge = aio_pika.Message(
            json.dumps({"job_id": "j" * HUGE_BYTES}).encode(), content_type="application/json"
        )
    cases = [
        ("bad-json", aio_pika.Message(b"{nope", content_type="application/json")),
        ("missing-fields", aio_pika.Message(b"{}", content_type="application/json")),
        ("unknown-type", unknown),
        ("no-cloudevents", aio_pika.Message(b"")),
        ("huge", huge),
    ]
    if route is topology.IMAGEPROC_ENGINE:
        # It takes no parameters: an empty request (`{}`, no body) is a valid one, so its
        # bad ones carry what it does not take (a field, a payload).
        cases[1] = ("missing-fields", RpcMessage({"pipeline": []}).to_message())
        cases[3] = ("no-cloudevents", RpcMessage({}, valid_image).to_message())
    for case, message in cases:
        message.headers = {**(message.headers or {}), CASE_HEADER: case}
    return cases


async def publish_to_queue(connection: Any, queue: str, messages: list[aio_pika.Message]) -> None:
    channel = await connection.channel(publisher_confirms=True)
    for message in messages:
        await channel.default_exchange.publish(message, routing_key=queue, mandatory=True)
    await channel.close()


async def test_malformed_messages_are_parked_and_consumers_keep_going(
    fault_mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    env = fault_mesh.env
    source = await stored_input(fault_mesh)
    work_queues = [topology.RUNNER_UPLOADS, topology.PROVENANCE_EVENTS, topology.UPLOAD_WEBHOOKS]
    routes = list(topology.ALL_ROUTES)
    problems: list[str] = []
    reasons: dict[str, dict[str, str]] = {}

    async with amqp(env) as connection:
        # Work queues: published straight to the queue (default exchange, key = queue name).
        for spec in work_queues:
            await publish_to_queue(connection, spec.name, work_queue_cases(source))

        # RPC queues, with reply_to: every bad request gets an error reply.
        replies: dict[str, AbstractIncomingMessage] = {}
        channel = await connection.channel()
        reply_queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        # Replies come through the reply exchange, under the reply queue's name.
        await reply_queue.bind(topology.REPLY_EXCHANGE, routing_key=reply_queue.name)

        expected_replies: list[str] = []
        all_replied = asyncio.Event()

        async def on_reply(message: AbstractIncomingMessage) -> None:
            replies[message.correlation_id or "?"] = message
            if not set(expected_replies) - set(replies):
                all_replied.set()

        await reply_queue.consume(on_reply, no_ack=True)
        for route in routes:
            for case, message in rpc_cases(route, source):
                message.reply_to = reply_queue.name
                message.correlation_id = f"{route.name}/{case}"
                # As an operator (may call every route): judged by content, not by sender.
                message.user_id = env["RABBITMQ_USER"]
                expected_replies.append(message.correlation_id)
                await channel.default_exchange.publish(message, routing_key=route.queue_name)
        # ... and the same requests without reply_to.
        for route in routes:
            await publish_to_queue(
                connection, route.queue_name, [m for _, m in rpc_cases(route, source)]
            )

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_replied.wait(), 30)
        codes = {c: headers_of(r).get(ERROR_CODE_HEADER, "") for c, r in replies.items()}
        print("RPC error replies:", json.dumps(codes, indent=2))
        for correlation_id in expected_replies:
            if correlation_id not in codes:
                problems.append(f"RPC {correlation_id}: no reply within 30 s")
            elif not codes[correlation_id]:
                problems.append(f"RPC {correlation_id}: answered without an error code")
            elif correlation_id.endswith("/huge") and codes[correlation_id] != "too_large":
                problems.append(f"RPC {correlation_id}: {codes[correlation_id]}, not too_large")

    # Work queues: each case parked, with a reason.
    for spec in work_queues:
        try:
            parked = await drain_parking(env, spec.parking_name, expect=len(CASES))
        except DeadlineExceeded as exc:
            problems.append(str(exc))
            continue
        reasons[spec.name] = _reasons(parked, problems, spec.parking_name)

    # RPC queues without reply_to: nobody to answer, so parked.
    for route in routes:
        try:
            parked = await drain_parking(env, route.parking_name, expect=len(CASES))
        except DeadlineExceeded as exc:
            problems.append(str(exc))
            continue
        reasons[route.queue_name] = _reasons(parked, problems, route.parking_name)
    print("park reasons:", json.dumps(reasons, indent=2))

    # The consumers kept going: a normal batch succeeds, every queue drains.
    batch = Batch(fault_mesh, http)
    await batch.run(30)
    try:
        await batch.verify()
    except AssertionError as exc:
        problems.append(str(exc))
    print(batch.summary())
    assert not problems, "\n".join(problems)


def _reasons(
    parked: list[AbstractIncomingMessage], problems: list[str], queue: str
) -> dict[str, str]:
    found: dict[str, str] = {}
    for message in parked:
        headers = headers_of(message)
        case = headers.get(CASE_HEADER, "?")
        found[case] = headers.get(PARK_ERROR_HEADER, "")[:200]
        if not found[case]:
            problems.append(f"{queue}: {case} parked without a {PARK_ERROR_HEADER} header")
        elif case == "huge" and not queue.startswith("rpc.") and "too large" not in found[case]:
            problems.append(f"{queue}: huge message parked for another reason: {found[case]}")
    missing = set(CASES) - set(found)
    if missing:
        problems.append(f"{queue}: cases not parked: {sorted(missing)}")
    return found
