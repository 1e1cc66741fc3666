from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from messaging import Broker, topology
from messaging.events import ImageUploaded
from objectstore import ObjectStore, open_store
from servicekit import add_ops_routes, add_readiness_check, package_version

from .runner import Runner
from .settings import Settings

SETTINGS = web.AppKey("settings", Settings)
BROKER = web.AppKey("broker", Broker)
STORE = web.AppKey("store", ObjectStore)


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    add_ops_routes(app)
    app.cleanup_ctx.extend([_store_ctx, _broker_ctx, _consumer_ctx])
    return app


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with open_store(settings) as store:
        app[STORE] = store

        async def s3_ready() -> bool:
            return await store.ping(settings.s3_output_bucket)

        add_readiness_check(app, "s3", s3_ready)
        yield


async def _broker_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    version = package_version("imagemesh-imageproc-runner")
    async with Broker(settings, service="imageproc_runner", version=version) as broker:
        app[BROKER] = broker

        async def broker_ready() -> bool:
            return broker.is_healthy()

        add_readiness_check(app, "rabbitmq", broker_ready)
        yield
        await broker.close(drain_timeout=settings.shutdown_timeout_seconds)


async def _consumer_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    runner = Runner(
        app[BROKER],
        app[STORE],
        output_bucket=settings.s3_output_bucket,
        imageproc_timeout=settings.imageproc_timeout_seconds,
    )
    await app[BROKER].subscribe(
        topology.RUNNER_UPLOADS,
        runner.on_uploaded,
        ImageUploaded,
        prefetch=settings.runner_concurrency,
    )
    yield
