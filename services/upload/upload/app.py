from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from messaging import topology
from messaging.constants import UPLOAD
from messaging.lifetime import broker_resource
from objectstore import ObjectStore, open_store
from pipeline import harden_vips
from servicekit import (
    CleanupContext,
    add_ops_routes,
    add_readiness_check,
    http_metrics,
    resource,
)

from .errors import error_middleware, security_headers
from .guard import Guard, guard_middleware, over_https
from .inflight import download_slots, upload_slots
from .jobs import Jobs
from .keys import (
    BROKER,
    DOWNLOADS,
    GUARD,
    JOBS,
    LIVE,
    SETTINGS,
    STORE,
    STREAMS,
    UPLOADS,
    WEBHOOK_SENDER,
)
from .live import LiveJobs
from .progress import stream_slots
from .routes import STATIC, routes
from .session import sessions
from .settings import Settings
from .webhook_http import Sender
from .webhooks import FINISHED_EVENTS, Webhooks, target_rules

# The handler modules register their routes on `routes` when imported: all of them,
# before `app.add_routes(routes)` below, and in this order (the order of the route table).
# isort: off
from . import pages  # noqa: F401
from . import submission  # noqa: F401
from . import job_views  # noqa: F401
from . import results_zip  # noqa: F401
from . import control  # noqa: F401
from . import retry  # noqa: F401
from . import erase  # noqa: F401
from . import thumbnail_views  # noqa: F401
from . import provenance_views  # noqa: F401
from . import documents  # noqa: F401
from . import webhook_views  # noqa: F401
# isort: on


def create_app(settings: Settings) -> web.Application:
    """The upload service's app: the API and web pages, the ops routes and, for its
    lifetime, S3, the broker and the jobs (`Jobs`, `LiveJobs`)."""
    harden_vips()
    guard = Guard(settings)
    app = web.Application(middlewares=_middlewares(settings, guard))
    app.on_response_prepare.append(security_headers)
    app[SETTINGS] = settings
    app[GUARD] = guard
    _add_slots(app, settings)
    add_ops_routes(app)
    app.add_routes(routes)
    app.router.add_static("/static/", STATIC)

    async def s3_ready(store: ObjectStore) -> bool:
        return await store.ping(settings.s3_input_bucket)

    app.cleanup_ctx.extend(
        [
            resource(STORE, lambda: open_store(settings), readiness=("s3", s3_ready)),
            # Before the broker: closed after it, once in-flight deliveries are drained.
            resource(WEBHOOK_SENDER, lambda: Sender(target_rules(settings))),
            broker_resource(BROKER, settings, UPLOAD, settings.shutdown_timeout_seconds),
            _jobs(settings),
            _webhooks(settings),
        ]
    )
    return app


def _middlewares(settings: Settings, guard: Guard) -> list[Middleware]:
    """Metrics first: they see the status the error middleware answers with. Sessions
    before the guard, which reads them."""
    middlewares: list[Middleware] = [http_metrics, error_middleware]
    if settings.upload_session_secret is not None:
        secret = settings.upload_session_secret.get_secret_value()
        middlewares.append(sessions(secret, secure=over_https))
    middlewares.append(guard_middleware(guard))
    return middlewares


def _add_slots(app: web.Application, settings: Settings) -> None:
    """How many uploads, downloads and progress streams may run at once, per client (or
    principal) and in all."""
    app[UPLOADS] = upload_slots(
        total=settings.upload_max_concurrent_uploads,
        per_client=settings.upload_max_concurrent_uploads_per_client,
    )
    app[DOWNLOADS] = download_slots(
        total=settings.upload_max_concurrent_downloads,
        per_client=settings.upload_max_concurrent_downloads_per_client,
    )
    app[STREAMS] = stream_slots(
        total=settings.upload_max_streams,
        per_principal=settings.upload_max_streams_per_principal,
    )


def _jobs(settings: Settings) -> CleanupContext:
    """The jobs (`Jobs`) and the live view of every event (`LiveJobs`), once S3 and the
    broker are open; ready when provenancedb consumes its record requests."""

    async def jobs(app: web.Application) -> AsyncIterator[None]:
        async def provenance_ready() -> bool:
            # Jobs are recorded before they are accepted: no provenancedb, no uploads.
            _, consumers = await app[BROKER].queue_depth(topology.PROVENANCE_RECORD.queue_name)
            return consumers > 0

        add_readiness_check(app, "provenancedb", provenance_ready)
        # Every event passes this replica too, for the progress streams it serves and
        # the status of the jobs it saw start.
        app[LIVE] = LiveJobs()
        app[JOBS] = Jobs(
            app[BROKER],
            app[STORE],
            input_bucket=settings.s3_input_bucket,
            rpc_timeout=settings.rpc_timeout_seconds,
            max_queued=settings.upload_max_queued,
            max_queued_per_principal=settings.upload_max_queued_per_principal,
            live=app[LIVE],
        )
        await app[BROKER].watch(app[LIVE].on_event)
        yield
        await app[JOBS].close()

    return jobs


def _webhooks(settings: Settings) -> CleanupContext:
    """Consume every job's end, for the jobs with a `callback_url` (`webhooks.py`)."""

    async def webhooks(app: web.Application) -> AsyncIterator[None]:
        handler = Webhooks(
            app[JOBS],
            app[WEBHOOK_SENDER],
            keys=settings.webhook_key,
            public_url=settings.upload_public_url,
        )
        await app[BROKER].subscribe(
            topology.UPLOAD_WEBHOOKS, handler.on_finished, FINISHED_EVENTS, prefetch=16
        )
        yield

    return webhooks
