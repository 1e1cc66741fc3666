from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from aiohttp import web

from messaging import Broker, Envelope, topology
from messaging.events import OperationApplied
from pipeline import harden_vips
from servicekit import add_ops_routes, resource

from .service import ImageProcessor, Rules
from .settings import Settings

BROKER = web.AppKey("broker", Broker)
POOL = web.AppKey("pool", ThreadPoolExecutor)


def create_app(settings: Settings) -> web.Application:
    harden_vips()
    app = web.Application()
    add_ops_routes(app)

    def broker() -> Broker:
        return Broker(
            settings, service="imageproc", shutdown_timeout=settings.shutdown_timeout_seconds
        )

    async def serve(app: web.Application) -> AsyncIterator[None]:
        rules = Rules(
            limits=settings.image_limits(),
            max_ops=settings.pipeline_max_ops,
            max_input_bytes=settings.image_max_bytes,
            # The reply carries the output: it must fit in one message.
            max_output_bytes=settings.amqp_max_message_bytes - 64 * 1024,
            timeout=settings.pipeline_timeout_seconds,
        )
        broker = app[BROKER]

        async def record(event: OperationApplied, cause: Envelope, key: str) -> object:
            return await broker.publish(event, cause=cause, key=key)

        processor = ImageProcessor(app[POOL], rules, record)
        await app[BROKER].serve(
            topology.IMAGEPROC_RUN, processor.on_run, prefetch=settings.imageproc_concurrency
        )
        yield

    # Cleanup runs in reverse: the broker stops and drains in-flight pipelines, then the pool.
    app.cleanup_ctx.extend(
        [
            resource(POOL, lambda: _thread_pool(settings.imageproc_concurrency)),
            resource(BROKER, broker, readiness=("rabbitmq", Broker.ping)),
            serve,
        ]
    )
    return app


@asynccontextmanager
async def _thread_pool(workers: int) -> AsyncIterator[ThreadPoolExecutor]:
    # libvips releases the GIL, so threads give real parallelism.
    with ThreadPoolExecutor(workers, "pipeline") as pool:
        yield pool
