from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from messaging import Broker, topology
from messaging.constants import IMAGEPROC
from messaging.lifetime import broker_resource
from servicekit import add_ops_routes, resource

from .engine import engine_handler
from .service import ImageProcessor, Rules
from .settings import Settings
from .stops import Stops
from .workers import PoolConfig, WorkerPool, return_large_blocks

BROKER = web.AppKey("broker", Broker)
POOL = web.AppKey("pool", WorkerPool)


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    add_ops_routes(app)

    async def serve(app: web.Application) -> AsyncIterator[None]:
        rules = Rules(
            limits=settings.image_limits(),
            max_ops=settings.pipeline_max_ops,
            max_input_bytes=settings.image_max_bytes,
            # The reply carries the output: it must fit in one message.
            max_output_bytes=settings.amqp_max_message_bytes - 64 * 1024,
        )
        stops = Stops()
        # Every replica hears every cancellation: the job may run on any of them.
        await app[BROKER].watch(stops.on_event, topology.CANCEL_REQUESTS)
        processor = ImageProcessor(app[POOL], rules, stops)
        await app[BROKER].serve(
            topology.IMAGEPROC_RUN, processor.on_run, prefetch=settings.imageproc_concurrency
        )
        # Its own queue: answered at once, however busy the pipelines are.
        on_engine = engine_handler(lambda: app[POOL].engine)
        await app[BROKER].serve(topology.IMAGEPROC_ENGINE, on_engine, prefetch=4)
        yield

    # Cleanup runs in reverse: the broker stops and drains in-flight pipelines, then the pool.
    app.cleanup_ctx.extend(
        [
            resource(POOL, lambda: _worker_pool(settings)),
            broker_resource(BROKER, settings, IMAGEPROC, settings.shutdown_timeout_seconds),
            serve,
        ]
    )
    return app


@asynccontextmanager
async def _worker_pool(settings: Settings) -> AsyncIterator[WorkerPool]:
    return_large_blocks()
    workers = settings.imageproc_concurrency
    pool = WorkerPool(
        PoolConfig(
            workers=workers,
            timeout=settings.pipeline_timeout_seconds,
            # The ceiling covers all the workers: each gets an equal share.
            memory_bytes=settings.imageproc_memory_limit_mb * 2**20 // workers,
            # The pipelines already run in parallel, one per core, so more libvips threads
            # per pipeline only add CPU (~10 % per image, benchmarks/results/memory.md) and
            # buffers (VIPS_CONCURRENCY, when set, wins).
            vips_threads=max(1, (os.cpu_count() or 1) // workers),
            admission_bytes=settings.imageproc_admission_mb * 2**20,
        )
    )
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()
