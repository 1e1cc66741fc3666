"""Least privilege on the real broker: each service's user, provisioned by the stack from
`messaging.permissions`, can do its own work and is refused everything else."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import pytest
import stack
from aiormq.exceptions import ChannelAccessRefused, ProbableAuthenticationError

from messaging import Broker, BrokerSettings, RpcMessage, topology
from messaging.events import ImageProcessed, OperationApplied
from tests.conftest import isolated_env, management, settings_from

pytestmark = pytest.mark.integration

SERVICES = ("upload", "imageproc_runner", "imageproc", "provenancedb")


@pytest.fixture(scope="module")
def env(stack_config: dict[str, str]) -> Iterator[dict[str, str]]:
    """A vhost of its own, with service users of their own (names prefixed, deleted after)."""
    prefix = f"test-{uuid.uuid4().hex[:6]}-"
    config = {**stack_config, "RABBITMQ_SERVICE_USER_PREFIX": prefix}
    with isolated_env(config, "perm") as isolated:
        stack.provision_service_users(isolated)
        try:
            yield isolated
        finally:
            for service in SERVICES:
                user, _ = stack.service_rabbit_user(isolated, service)
                management(isolated, "DELETE", f"/api/users/{user}")


def as_service(env: dict[str, str], service: str) -> BrokerSettings:
    user, password = stack.service_rabbit_user(env, service)
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

        await server.serve(topology.PROVENANCE_JOB_STATUS, echo)
        await server.subscribe(topology.PROVENANCE_EVENTS, ignore, ())
        async with Broker(as_service(env, "upload"), service="upload") as client:
            reply = await client.call(
                topology.PROVENANCE_JOB_STATUS, RpcMessage({"job_id": "j"}), timeout=10
            )
            assert reply.meta == {"echo": {"job_id": "j"}}
            await client.watch(lambda envelope, event: None)
    async with Broker(as_service(env, "imageproc_runner"), service="imageproc_runner") as runner:
        await runner.subscribe(topology.RUNNER_UPLOADS, ignore, ())
    async with Broker(as_service(env, "imageproc"), service="imageproc") as imageproc:
        await imageproc.publish(
            OperationApplied(
                job_id="j", index=0, op="grayscale", params={}, duration_ms=1.0,
                input_sha256="0" * 64,
            )
        )  # fmt: skip


async def test_a_service_cannot_publish_another_services_events(connect: Any) -> None:
    channel = await connect("imageproc")
    exchange = await channel.get_exchange("imagemesh.events", ensure=False)
    with pytest.raises(ChannelAccessRefused):
        await exchange.publish(aio_pika.Message(b"{}"), routing_key=ImageProcessed.type)


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
