"""Least privilege on the real broker: each service's user, provisioned by the stack from
`messaging.permissions`, can do its own work and is refused everything else."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
import stack
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelPreconditionFailed,
    ProbableAuthenticationError,
)

from messaging import Broker, BrokerSettings, Delivery, RpcError, RpcMessage, topology
from messaging._identity import SENDER_HEADER
from messaging.constants import SERVICES
from messaging.events import (
    ImageProcessed,
    ImageRef,
    ImageUploaded,
    OperationApplied,
    ProcessingStarted,
    WebhookAttempted,
)
from tests.conftest import isolated_env, management, settings_from
from tests.waiting import async_wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(stack_config: dict[str, str]) -> Iterator[dict[str, str]]:
    """A vhost of its own, with service users of their own (names prefixed, deleted after)."""
    prefix = f"test-{uuid.uuid4().hex[:6]}-"
    config = {**stack_config, "RABBITMQ_SERVICE_USER_PREFIX": prefix}
    with isolated_env(config, "perm") as isolated:
        stack.provision_service_users(stack.Config.of(isolated))
        try:
            yield isolated
        finally:
            for service in SERVICES:
                user, _ = stack.service_rabbit_user(stack.Config.of(isolated), service)
                management(isolated, "DELETE", f"/api/users/{user}")


def as_service(env: dict[str, str], service: str) -> BrokerSettings:
    user, password = stack.service_rabbit_user(stack.Config.of(env), service)
    settings: BrokerSettings = settings_from(
        {**env, "RABBITMQ_USER": user, "RABBITMQ_PASSWORD": password}, BrokerSettings
    )
    return settings.model_copy(update={"amqp_declare_exchanges": False})


@pytest.fixture
async def connect(env: dict[str, str]) -> AsyncIterator[Any]:
    opened: list[aio_pika.abc.AbstractConnection] = []

    async def open_as(service: str) -> aio_pika.abc.AbstractChannel:
        connection = await aio_pika.connect(as_service(env, service).amqp_url())
        opened.append(connection)
        return await connection.channel()

    yield open_as
    for connection in opened:
        await connection.close()


async def ignore(event: Any, ctx: Any) -> None:
    return None


async def test_each_service_does_its_own_work_with_its_own_user(env: dict[str, str]) -> None:
    # The whole round: provenancedb serves, upload calls; the runner declares its queue.
    async with Broker(as_service(env, "provenancedb"), service="provenancedb") as server:

        async def echo(request: RpcMessage) -> RpcMessage:
            return RpcMessage({"echo": request.meta})

        await server.serve_raw(topology.PROVENANCE_JOB_STATUS, echo)
        await server.subscribe(topology.PROVENANCE_EVENTS, ignore, ())
        async with Broker(as_service(env, "upload"), service="upload") as client:
            reply = await client.call_raw(
                topology.PROVENANCE_JOB_STATUS, RpcMessage({"job_id": "j"}), timeout=10
            )
            assert reply.meta == {"echo": {"job_id": "j"}}
            await client.watch(lambda envelope, event: None)
    # imageproc serves its RPC (and publishes nothing); the runner calls it; both follow
    # the cancellations.
    async with (
        Broker(as_service(env, "imageproc"), service="imageproc") as imageproc,
        Broker(as_service(env, "imageproc_runner"), service="imageproc_runner") as runner,
    ):
        await imageproc.serve_raw(topology.IMAGEPROC_RUN, echo)
        await imageproc.watch(lambda envelope, event: None, topology.CANCEL_REQUESTS)
        await runner.subscribe(topology.RUNNER_UPLOADS, ignore, ())
        await runner.watch(lambda envelope, event: None, topology.CANCEL_REQUESTS)
        reply = await runner.call_raw(
            topology.IMAGEPROC_RUN, RpcMessage({"pipeline": []}, b"x"), timeout=10
        )
        assert reply.meta == {"echo": {"pipeline": []}}


@pytest.mark.parametrize(
    ("exchange_name", "event_type"),
    [("imagemesh.provenance", OperationApplied.type), ("imagemesh.events", ImageProcessed.type)],
)
async def test_imageproc_may_publish_no_event(
    connect: Any, exchange_name: str, event_type: str
) -> None:
    # Its operations are in its RPC replies: not even operation.applied, which it once
    # published, is its to publish now.
    channel = await connect("imageproc")
    exchange = await channel.get_exchange(exchange_name, ensure=False)
    with pytest.raises(ChannelAccessRefused):
        await exchange.publish(aio_pika.Message(b"{}"), routing_key=event_type)


async def test_a_service_cannot_publish_another_services_events(connect: Any) -> None:
    channel = await connect("imageproc")
    exchange = await channel.get_exchange("imagemesh.events", ensure=False)
    with pytest.raises(ChannelAccessRefused):
        await exchange.publish(aio_pika.Message(b"{}"), routing_key=ImageProcessed.type)


@pytest.mark.parametrize(
    ("service", "event_type"),
    [("imageproc_runner", "job.cancel-requested"), ("upload", "job.cancelled")],
)
async def test_only_upload_asks_to_cancel_and_only_the_runner_cancels(
    connect: Any, service: str, event_type: str
) -> None:
    channel = await connect(service)
    exchange = await channel.get_exchange("imagemesh.events", ensure=False)
    with pytest.raises(ChannelAccessRefused):
        await exchange.publish(aio_pika.Message(b"{}"), routing_key=event_type)


async def test_nobody_publishes_through_the_default_exchange(connect: Any) -> None:
    # It would reach any queue by name, the runner's included.
    for service in SERVICES:
        channel = await connect(service)
        with pytest.raises(ChannelAccessRefused):
            await channel.default_exchange.publish(
                aio_pika.Message(b"{}"), routing_key=topology.RUNNER_UPLOADS.name
            )


async def test_a_service_cannot_read_another_services_queue(connect: Any) -> None:
    # The queue exists (the runner declared it above).
    channel = await connect("imageproc")
    queue = await channel.get_queue(topology.RUNNER_UPLOADS.name, ensure=False)
    with pytest.raises(ChannelAccessRefused):
        await queue.get(fail=False)


async def test_upload_consumes_its_webhook_queue_alone_and_alone_records_attempts(
    env: dict[str, str], connect: Any
) -> None:
    # Its queue, delay queues and parking lot declared with its own user (webhooks.py).
    async with Broker(as_service(env, "upload"), service="upload") as upload:
        await upload.subscribe(topology.UPLOAD_WEBHOOKS, ignore, ())
        channel = await connect("upload")
        exchange = await channel.get_exchange("imagemesh.provenance", ensure=False)
        await exchange.publish(aio_pika.Message(b"{}"), routing_key=WebhookAttempted.type)
    for service in ("imageproc_runner", "provenancedb"):
        channel = await connect(service)
        queue = await channel.get_queue(topology.UPLOAD_WEBHOOKS.name, ensure=False)
        with pytest.raises(ChannelAccessRefused):
            await queue.get(fail=False)
        channel = await connect(service)
        exchange = await channel.get_exchange("imagemesh.provenance", ensure=False)
        with pytest.raises(ChannelAccessRefused):
            await exchange.publish(aio_pika.Message(b"{}"), routing_key=WebhookAttempted.type)


async def test_no_service_may_configure_the_exchanges(connect: Any) -> None:
    for service in SERVICES:
        channel = await connect(service)
        with pytest.raises(ChannelAccessRefused):
            await channel.declare_exchange(f"imagemesh.{service}-own", aio_pika.ExchangeType.TOPIC)
    channel = await connect("provenancedb")
    with pytest.raises(ChannelAccessRefused):
        await channel.channel.exchange_delete("imagemesh.events")


async def test_a_service_cannot_declare_another_services_queue(connect: Any) -> None:
    channel = await connect("upload")
    with pytest.raises(ChannelAccessRefused):
        await channel.declare_queue("provenancedb.events.sneaky", durable=True)


async def test_guest_cannot_log_in(env: dict[str, str]) -> None:
    url = f"amqp://guest:guest@{env['RABBITMQ_HOST']}:{env['RABBITMQ_PORT']}/"
    with pytest.raises(ProbableAuthenticationError):
        await aio_pika.connect(url)


# --- services cannot impersonate each other ---------------------------------------------


def uploaded(job_id: str) -> ImageUploaded:
    image = ImageRef(
        bucket="in", key="k", sha256="0" * 64, bytes=1, format="png", width=1, height=1,
        content_type="image/png",
    )  # fmt: skip
    return ImageUploaded(job_id=job_id, input=image, pipeline=[], created_at=datetime.now(UTC))


async def test_a_server_cannot_bind_a_queue_to_another_servers_routes(connect: Any) -> None:
    # imageproc may declare queues of its own (its reply queues) and bind one to its own
    # route, but none to provenancedb's requests (client IPs, filenames, reply-to).
    channel = await connect("imageproc")
    spy = await channel.declare_queue("rpc-reply.imageproc.spy", exclusive=True)
    await spy.bind(topology.IMAGEPROC_RUN.exchange, routing_key=topology.IMAGEPROC_RUN.name)
    for route in (topology.PROVENANCE_RECORD, topology.PROVENANCE_JOB_STATUS):
        channel = await connect("imageproc")
        spy = await channel.declare_queue(f"rpc-reply.imageproc.{route.name}", exclusive=True)
        with pytest.raises(ChannelAccessRefused):
            await spy.bind(route.exchange, routing_key=route.name)


async def test_the_broker_refuses_a_publish_with_another_users_user_id(
    env: dict[str, str], connect: Any
) -> None:
    channel = await connect("imageproc_runner")
    exchange = await channel.get_exchange("imagemesh.provenance", ensure=False)
    forged_user, _ = stack.service_rabbit_user(stack.Config.of(env), "upload")
    message = aio_pika.Message(b"{}", user_id=forged_user)
    with pytest.raises(ChannelPreconditionFailed):
        await exchange.publish(message, routing_key=ProcessingStarted.type)
    # Its own name passes: the refusal is about the user_id.
    channel = await connect("imageproc_runner")
    exchange = await channel.get_exchange("imagemesh.provenance", ensure=False)
    own_user, _ = stack.service_rabbit_user(stack.Config.of(env), "imageproc_runner")
    await exchange.publish(aio_pika.Message(b"{}", user_id=own_user), ProcessingStarted.type)


async def test_a_consumer_parks_an_event_its_sender_may_not_publish(env: dict[str, str]) -> None:
    """provenancedb may publish to the retry exchange (for its own queue), which routes by
    queue name: it could push an `image.uploaded` straight into the runner's queue. The
    runner names the sender by its broker-checked user_id and parks it, untouched."""
    handled: list[str] = []
    told: list[str] = []

    async def handle(event: ImageUploaded, ctx: Any) -> None:
        handled.append(event.job_id)

    async def on_park(event: ImageUploaded, ctx: Any, error: str) -> None:
        told.append(event.job_id)

    runner_settings = as_service(env, "imageproc_runner")
    async with Broker(runner_settings, service="imageproc_runner") as runner:
        await runner.subscribe(topology.RUNNER_UPLOADS, handle, ImageUploaded, on_park=on_park)
        async with Broker(as_service(env, "provenancedb"), service="provenancedb") as forger:
            forged = uploaded("job-forged")
            envelope = forger.envelope_for(forged)
            message = envelope.to_message(forged.model_dump_json().encode())
            await forger._publish(topology.RETRY_EXCHANGE, message, topology.RUNNER_UPLOADS.name)
        async with Broker(as_service(env, "upload"), service="upload") as upload:
            await upload.publish(uploaded("job-genuine"))
        await async_wait_for(lambda: handled == ["job-genuine"], timeout=15)
        parked = await _get(runner, topology.RUNNER_UPLOADS.parking_name)
    assert parked.message_id == envelope.id
    error = str(parked.headers["x-imagemesh-error"])
    assert "forbidden sender" in error
    assert "provenancedb" in error
    assert "image.uploaded" in error
    assert handled == ["job-genuine"]
    assert told == []  # a forged message tells nobody about the job it names


async def test_an_operators_republish_does_not_launder_a_forged_event(
    env: dict[str, str],
) -> None:
    """The operator re-publishes a parked forged event (`make parking`): it is judged by
    the user that first published it, not by the operator's, and is parked again."""
    handled: list[str] = []

    async def handle(event: ImageUploaded, ctx: Any) -> None:
        handled.append(event.job_id)

    parking = topology.RUNNER_UPLOADS.parking_name
    async with Broker(as_service(env, "imageproc_runner"), service="imageproc_runner") as runner:
        await runner.subscribe(topology.RUNNER_UPLOADS, handle, ImageUploaded)
        before = (await runner.queue_depth(parking))[0]
        async with Broker(as_service(env, "provenancedb"), service="provenancedb") as forger:
            forged = uploaded("job-laundered")
            envelope = forger.envelope_for(forged)
            message = envelope.to_message(forged.model_dump_json().encode())
            await forger._publish(topology.RETRY_EXCHANGE, message, topology.RUNNER_UPLOADS.name)

        async def parked() -> bool:
            return (await runner.queue_depth(parking))[0] == before + 1

        await async_wait_for(parked, timeout=15)
        await _republish_as_operator(env, envelope.id)
        await async_wait_for(parked, timeout=15)  # parked again, not handled
        again = await _get(runner, parking, envelope.id)
    assert handled == []
    assert "forbidden sender: service 'provenancedb'" in str(again.headers["x-imagemesh-error"])


async def test_a_message_planted_in_a_parking_lot_keeps_its_planters_name(
    env: dict[str, str],
) -> None:
    """imageproc may publish to the dead-letter exchange (its request queues park there):
    it plants an `image.uploaded` in the runner's parking lot, claiming in the header that
    upload first sent it. Re-published by the operator, it is judged as imageproc's."""
    handled: list[str] = []

    async def handle(event: ImageUploaded, ctx: Any) -> None:
        handled.append(event.job_id)

    parking = topology.RUNNER_UPLOADS.parking_name
    upload_user, _ = stack.service_rabbit_user(stack.Config.of(env), "upload")
    async with Broker(as_service(env, "imageproc_runner"), service="imageproc_runner") as runner:
        await runner.subscribe(topology.RUNNER_UPLOADS, handle, ImageUploaded)
        before = (await runner.queue_depth(parking))[0]
        async with Broker(as_service(env, "imageproc"), service="imageproc") as planter:
            planted = uploaded("job-planted")
            envelope = planter.envelope_for(planted)
            headers = {SENDER_HEADER: upload_user}
            message = envelope.to_message(planted.model_dump_json().encode(), headers=headers)
            key = topology.RUNNER_UPLOADS.name
            await planter._publish(topology.DEAD_LETTER_EXCHANGE, message, key)

        async def parked() -> bool:
            return (await runner.queue_depth(parking))[0] == before + 1

        await async_wait_for(parked, timeout=15)
        await _republish_as_operator(env, envelope.id)
        await async_wait_for(parked, timeout=15)  # parked again, not handled
        again = await _get(runner, parking, envelope.id)
    assert handled == []
    assert "forbidden sender: service 'imageproc'" in str(again.headers["x-imagemesh-error"])


async def _republish_as_operator(env: dict[str, str], message_id: str) -> None:
    cli = [sys.executable, "-m", "messaging.parking", "republish", message_id]
    done = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--queue", topology.RUNNER_UPLOADS.name],
        env={**os.environ, **env},  # the administrator: an operator
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"re-published {message_id}" in done.stdout, done.stderr


async def test_a_job_the_runner_hands_back_is_still_uploads_when_it_returns(
    env: dict[str, str],
) -> None:
    """The runner's fair dispatch hands a held job back (a copy under the runner's own
    user_id, at the tail of its queue): it comes back judged as upload's, and is handled."""
    handled: list[str] = []
    held: list[Delivery[ImageUploaded]] = []

    async def handle(event: ImageUploaded, ctx: Any) -> None:
        handled.append(event.job_id)

    settings = as_service(env, "imageproc_runner")
    async with Broker(settings, service="imageproc_runner") as runner:
        await runner.subscribe(topology.RUNNER_UPLOADS, handle, ImageUploaded, dispatch=held.append)
        async with Broker(as_service(env, "upload"), service="upload") as upload:
            await upload.publish(uploaded("job-handed-back"))
        await async_wait_for(lambda: len(held) == 1, timeout=15)
        await held[0].release("held_too_long")  # back to the tail of the queue
        await async_wait_for(lambda: len(held) == 2, timeout=15)
        returned = held[1]
        assert returned.message.user_id == settings.rabbitmq_user  # the runner's copy
        await returned.handle()
    assert handled == ["job-handed-back"]


async def test_an_rpc_server_refuses_a_caller_the_route_does_not_allow(
    env: dict[str, str],
) -> None:
    # Served as if only the runner called job-status: upload's request is refused.
    runner_only = replace(topology.PROVENANCE_JOB_STATUS, callers=("imageproc_runner",))
    asked: list[RpcMessage] = []

    async def answer(request: RpcMessage) -> RpcMessage:
        asked.append(request)
        return RpcMessage({"found": False})

    async with Broker(as_service(env, "provenancedb"), service="provenancedb") as server:
        await server.serve_raw(runner_only, answer)
        await server.serve_raw(topology.PROVENANCE_LINEAGE, answer)
        async with Broker(as_service(env, "upload"), service="upload") as client:
            with pytest.raises(RpcError) as refused:
                await client.call_raw(runner_only, RpcMessage({"job_id": "j"}), timeout=10)
            assert refused.value.code == "forbidden"
            assert "'upload' may not call provenancedb.job-status" in refused.value.message
            # The route's real callers get through, named for the handler.
            await client.call_raw(topology.PROVENANCE_LINEAGE, RpcMessage({}), timeout=10)
    assert [request.caller for request in asked] == ["upload"]


async def test_a_caller_ignores_a_reply_from_another_server(env: dict[str, str]) -> None:
    """imageproc may publish replies (to its own callers): one with the right reply queue
    and correlation id for a provenancedb call is ignored; provenancedb's is taken."""
    route = topology.PROVENANCE_JOB_STATUS
    async with (
        Broker(as_service(env, "upload"), service="upload") as client,
        Broker(as_service(env, "provenancedb"), service="provenancedb") as server,
        Broker(as_service(env, "imageproc"), service="imageproc") as impostor,
    ):
        channel = await server.channel()
        requests = await topology.declare_rpc_queue(channel, route)
        call = asyncio.create_task(client.call_raw(route, RpcMessage({"job_id": "j"}), timeout=20))
        request = await async_wait_for(lambda: requests.get(fail=False), timeout=10)
        assert request.reply_to
        for who, answer in (
            (impostor, {"found": True, "forged": True}),
            (server, {"found": False}),
        ):
            reply = RpcMessage(answer).to_message(correlation_id=request.correlation_id)
            await who._publish(topology.REPLY_EXCHANGE, reply, request.reply_to)
        await request.ack()
        assert (await call).meta == {"found": False}


async def _get(
    broker: Broker, queue_name: str, message_id: str | None = None
) -> aio_pika.abc.AbstractIncomingMessage:
    """The first message in a queue (taken off it), or the one with `message_id`."""
    channel = await broker.channel()
    queue = await channel.get_queue(queue_name, ensure=False)
    for _ in range(100):  # bounded: the queue holds a few messages at most
        found = await async_wait_for(lambda: queue.get(fail=False, no_ack=True), timeout=15)
        assert isinstance(found, aio_pika.abc.AbstractIncomingMessage)
        if message_id is None or found.message_id == message_id:
            return found
    raise AssertionError(f"no message {message_id} in {queue_name}")
