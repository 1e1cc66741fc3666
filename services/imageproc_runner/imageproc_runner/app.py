from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from messaging import Broker, topology
from messaging.cancels import Cancellations
from messaging.constants import IMAGEPROC_RUNNER
from messaging.events import ImageUploaded
from messaging.lifetime import broker_resource
from objectstore import ObjectStore, open_store
from servicekit import add_ops_routes, resource

from .dispatch import FairDispatcher
from .reuse import Reuse
from .runner import Runner
from .settings import Settings
from .thumbnails import Thumbnails

BROKER = web.AppKey("broker", Broker)
STORE = web.AppKey("store", ObjectStore)
THUMBNAILS_STOP_SECONDS = 2.0
"""How long a stopping runner lets thumbnails under way finish (best effort)."""


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    add_ops_routes(app)

    async def s3_ready(store: ObjectStore) -> bool:
        return await store.ping(settings.s3_output_bucket)

    async def consume(app: web.Application) -> AsyncIterator[None]:
        thumbnails = Thumbnails(app[BROKER], app[STORE], bucket=settings.s3_output_bucket)
        cancellations = Cancellations()
        # Before the first job is taken: a request that passes from now on is heard.
        await app[BROKER].watch(cancellations.on_event, topology.CANCEL_REQUESTS)
        runner = Runner(
            app[BROKER],
            app[STORE],
            output_bucket=settings.s3_output_bucket,
            imageproc_timeout=settings.imageproc_timeout_seconds,
            reuse=Reuse(app[BROKER], app[STORE], bucket=settings.s3_output_bucket),
            thumbnails=thumbnails,
            cancellations=cancellations,
        )
        dispatcher = FairDispatcher(
            concurrency=settings.runner_concurrency, max_hold=settings.runner_max_hold_seconds
        )
        dispatcher.start()
        await app[BROKER].subscribe(
            topology.RUNNER_UPLOADS,
            runner.on_uploaded,
            ImageUploaded,
            prefetch=settings.runner_prefetch,
            on_park=runner.on_parked,
            record_retries=True,
            dispatch=dispatcher.put,
        )
        yield
        # Cancelled first, so what is handed back is not delivered here again.
        await app[BROKER].stop_consuming()
        await dispatcher.stop(settings.shutdown_timeout_seconds)
        await thumbnails.stop(THUMBNAILS_STOP_SECONDS)

    app.cleanup_ctx.extend(
        [
            resource(STORE, lambda: open_store(settings), readiness=("s3", s3_ready)),
            broker_resource(BROKER, settings, IMAGEPROC_RUNNER, settings.shutdown_timeout_seconds),
            consume,
        ]
    )
    return app
