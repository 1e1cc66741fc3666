"""Sending stored images (a job's input and output) to the client."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web

from .guard import client_of
from .jobs import Jobs
from .keys import DOWNLOADS, SETTINGS
from .openapi import error
from .spool import Spool

log = structlog.get_logger("upload")
IMAGE_HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
SEND_CHUNK_BYTES = 256 * 1024
"""What an image being sent holds in memory at a time, besides its spool."""
TOO_MANY_DOWNLOADS = error(
    "this client's images being sent are at their cap (`too_many_downloads`, "
    "UPLOAD_MAX_CONCURRENT_DOWNLOADS_PER_CLIENT), or its rate is (`rate_limited`); retry "
    "after `Retry-After` seconds"
)
SENDING_UNAVAILABLE = error(
    "this server's images being sent are at their cap (`busy`, "
    "UPLOAD_MAX_CONCURRENT_DOWNLOADS), or a dependency is down; retry after `Retry-After` "
    "seconds"
)
"""The answers of a route that sends stored images (it holds a download slot meanwhile)."""


async def _send_image(
    request: web.Request, jobs: Jobs, image: dict[str, Any], content_type: str
) -> web.StreamResponse:
    """Send a stored image: held in a spool, not in memory, while the client reads it; a
    client that takes nothing for UPLOAD_BODY_TIMEOUT_SECONDS is cut."""
    settings = request.app[SETTINGS]
    spool = Spool(
        memory=settings.upload_spool_memory_bytes,
        directory=settings.upload_spool_dir,
        hashed=False,  # sent back as stored: no digest to compute
    )
    with request.app[DOWNLOADS].hold(client_of(request)):
        async with jobs.fetched(image, spool):
            response = web.StreamResponse(
                headers={
                    "Cache-Control": "private, max-age=3600",
                    "X-Content-Type-Options": "nosniff",
                }
            )
            response.content_type = content_type
            response.content_length = spool.size
            await response.prepare(request)
            source = spool.reader()
            try:
                while chunk := await asyncio.to_thread(source.read, SEND_CHUNK_BYTES):
                    async with asyncio.timeout(settings.upload_body_timeout_seconds):
                        await response.write(chunk)
            except TimeoutError:
                log.warning("download_cut", reason="the client took nothing", sent=source.tell())
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
    return response
