from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from messaging import Broker, topology
from pipeline import harden_vips
from servicekit import add_ops_routes, add_readiness_check, package_version

from .service import ImageProcessor
from .settings import Settings

SETTINGS = web.AppKey("settings", Settings)
BROKER = web.AppKey("broker", Broker)
POOL = web.AppKey("pool", ThreadPoolExecutor)


def create_app(settings: Settings) -> web.Application:
    harden_vips()
    app = web.Application()
    app[SETTINGS] = settings
    add_ops_routes(app)
    app.cleanup_ctx.extend([_pool_ctx, _broker_ctx, _server_ctx])
    return app


async def _pool_ctx(app: web.Application) -> AsyncIterator[None]:
    with ThreadPoolExecutor(app[SETTINGS].imageproc_concurrency, "pipeline") as pool:
        app[POOL] = pool
        yield


async def _broker_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with Broker(
        settings, service="imageproc", version=package_version("imagemesh-imageproc")
    ) as broker:
        app[BROKER] = broker

        async def broker_ready() -> bool:
            return broker.is_healthy()

        add_readiness_check(app, "rabbitmq", broker_ready)
        yield
        await broker.close(drain_timeout=settings.shutdown_timeout_seconds)


async def _server_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    processor = ImageProcessor(
        app[POOL],
        limits=settings.image_limits(),
        max_ops=settings.pipeline_max_ops,
        max_output_bytes=settings.amqp_max_message_bytes,
    )
    await app[BROKER].serve(
        topology.IMAGEPROC_RUN, processor.on_run, prefetch=settings.imageproc_concurrency
    )
    yield
