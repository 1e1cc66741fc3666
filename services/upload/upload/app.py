from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from messaging import Broker, topology
from objectstore import open_store
from pipeline import harden_vips
from servicekit import add_ops_routes, add_readiness_check, package_version

from .errors import error_middleware
from .jobs import Jobs
from .keys import BROKER, JOBS, SETTINGS, STORE
from .routes import STATIC, routes
from .settings import Settings


def create_app(settings: Settings) -> web.Application:
    harden_vips()
    app = web.Application(middlewares=[error_middleware])
    app[SETTINGS] = settings
    add_ops_routes(app)
    app.add_routes(routes)
    app.router.add_static("/static/", STATIC)
    app.cleanup_ctx.extend([_store_ctx, _broker_ctx, _jobs_ctx])
    return app


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with open_store(settings) as store:
        app[STORE] = store

        async def s3_ready() -> bool:
            return await store.ping(settings.s3_input_bucket)

        add_readiness_check(app, "s3", s3_ready)
        yield


async def _broker_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with Broker(
        settings, service="upload", version=package_version("imagemesh-upload")
    ) as broker:
        app[BROKER] = broker

        async def broker_ready() -> bool:
            return broker.is_healthy()

        async def provenance_ready() -> bool:
            # Jobs are recorded before they are accepted: no provenancedb, no uploads.
            _, consumers = await broker.queue_depth(topology.PROVENANCE_RECORD.queue_name)
            return consumers > 0

        add_readiness_check(app, "rabbitmq", broker_ready)
        add_readiness_check(app, "provenancedb", provenance_ready)
        yield
        await broker.close(drain_timeout=settings.shutdown_timeout_seconds)


async def _jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[JOBS] = Jobs(
        app[BROKER],
        app[STORE],
        input_bucket=settings.s3_input_bucket,
        rpc_timeout=settings.rpc_timeout_seconds,
    )
    yield
