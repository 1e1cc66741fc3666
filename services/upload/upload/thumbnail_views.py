"""A job's thumbnail for the history: the small square WebP the runner stored beside the
output (`messaging.thumbnails`), sent as stored. upload decodes nothing here: it reads one
small object from S3, for the job's owner (or an auditor) only, exactly as `/result`. A
job without one (finished before thumbnails existed) is sent to its `/result` instead."""

from __future__ import annotations

import structlog
from aiohttp import web

from messaging.thumbnails import THUMBNAIL_CONTENT_TYPE, THUMBNAIL_SIZE, thumbnail_key
from objectstore import ObjectNotFound

from .errors import ApiError
from .guard import principal_of
from .keys import JOBS, STORE
from .openapi import Doc, documented, error
from .routes import GONE, JOB_ID, UNAVAILABLE, _job_id, routes

log = structlog.get_logger("upload")
RETRY_AFTER_SECONDS = 5
CACHE_CONTROL = "private, max-age=31536000, immutable"
"""A job's output never changes once it succeeded, so neither does its thumbnail: the
browser keeps it for good (private: it is one principal's)."""

FALLBACK_CACHE_CONTROL = "private, no-cache"
"""The redirect is asked again each time: the thumbnail of a job that succeeded a moment
ago is made just after (in the background), and is then served instead."""


@routes.get("/api/v1/jobs/{job_id}/thumbnail")
@documented(
    Doc(
        f"A small square thumbnail of the output ({THUMBNAIL_SIZE} px WebP)",
        {
            200: ("the thumbnail", THUMBNAIL_CONTENT_TYPE),
            304: ("the thumbnail has not changed (`If-None-Match`)", None),
            307: (
                "the job has no thumbnail (not made yet: it is made just after the job "
                "succeeds; or the job finished before thumbnails were made, or its thumbnail "
                "could not be made): `Location` is its `/result`",
                None,
            ),
            404: error("no such job"),
            409: error(
                "not finished yet (`not_finished`), failed (`job_failed`) or cancelled "
                "(`job_cancelled`)"
            ),
            410: GONE,
            503: UNAVAILABLE,
        },
        description="Made once when the job's output is stored; cached for good "
        "(`ETag`, `Cache-Control: immutable`). Meant for lists of jobs: "
        "`/result` is the output itself.",
        parameters=(JOB_ID,),
    )
)
async def get_thumbnail(request: web.Request) -> web.StreamResponse:
    job_id = _job_id(request)
    # Owner-scoped first: another's job is not found, whatever the cache headers say.
    output, _ = await request.app[JOBS].result(job_id, principal_of(request))
    etag = f'"{output["sha256"]}-{THUMBNAIL_SIZE}"'
    headers = {
        "Cache-Control": CACHE_CONTROL,
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
    }
    if _etags(request.headers.get("If-None-Match", "")) & {etag, "*"}:
        return web.Response(status=304, headers=headers)
    try:
        data = await request.app[STORE].get(output["bucket"], thumbnail_key(output["sha256"]))
    except ObjectNotFound:
        # Degrade to the output itself (what the history showed before thumbnails): not
        # cached, never an error for the page to show.
        raise web.HTTPTemporaryRedirect(
            f"/api/v1/jobs/{job_id}/result",
            headers={"Cache-Control": FALLBACK_CACHE_CONTROL},
        ) from None
    except Exception as exc:
        log.exception("thumbnail_fetch_failed", job_id=job_id)
        raise ApiError(
            503,
            "unavailable",
            "the image store is unavailable; try again shortly",
            retry_after=RETRY_AFTER_SECONDS,
        ) from exc
    return web.Response(body=data, content_type=THUMBNAIL_CONTENT_TYPE, headers=headers)


def _etags(header: str) -> set[str]:
    """The entity tags of an `If-None-Match` header (weak ones compare as strong: a
    thumbnail has one representation)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
