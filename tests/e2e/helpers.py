"""Making images and talking to the mesh's public API, for the end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from PIL import Image

from messaging.constants import FINAL_STATUSES
from tests.waiting import Deadline, async_wait_for


def photo(width: int, height: int, fmt: str = "JPEG", *, quality: int = 85) -> bytes:
    """A photo-like image: smooth gradients plus fine detail, so encoders have real work.
    Different bytes at every call (the noise is random): no job reuses an earlier job's
    output by accident (see `tests/unique.py` for bytes that must stay the same image)."""
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 40)
    red = Image.blend(gradient, noise, 0.3)
    image = Image.merge("RGB", (red, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), noise))
    buffer = io.BytesIO()
    options: dict[str, Any] = {"quality": quality} if fmt == "JPEG" else {}
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def submit(
    session: aiohttp.ClientSession,
    base: str,
    data: bytes,
    pipeline: str | None,
    *,
    filename: str = "image.jpg",
) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    if pipeline is not None:
        form.add_field("pipeline", pipeline)
    return await session.post(f"{base}/api/v1/jobs", data=form)


UPLOADS_AT_ONCE = 4
"""upload's cap on one client's uploads in progress (UPLOAD_MAX_CONCURRENT_UPLOADS_PER_CLIENT,
default 4): one more at once is refused 429."""


async def submit_all(
    session: aiohttp.ClientSession, base: str, uploads: list[tuple[bytes, str | None]]
) -> list[aiohttp.ClientResponse]:
    """`submit` each (data, pipeline), at most UPLOADS_AT_ONCE at a time; answers in order."""
    limit = asyncio.Semaphore(UPLOADS_AT_ONCE)

    async def one(data: bytes, pipeline: str | None) -> aiohttp.ClientResponse:
        async with limit:
            return await submit(session, base, data, pipeline)

    return list(await asyncio.gather(*(one(data, pipeline) for data, pipeline in uploads)))


async def job_status(session: aiohttp.ClientSession, base: str, job_id: str) -> dict[str, Any]:
    """GET /api/v1/jobs/{id}: the job's status, which must be found (200)."""
    async with session.get(f"{base}/api/v1/jobs/{job_id}") as response:
        assert response.status == 200, await response.text()
        job: dict[str, Any] = await response.json()
        return job


async def wait_finished(
    session: aiohttp.ClientSession, base: str, job_id: str, *, timeout: float = 60.0
) -> dict[str, Any]:
    """Poll the job until it succeeded or failed (with a deadline), and until provenance has
    recorded its end: upload answers from the events it follows live, provenancedb records
    the same events concurrently, so a test that reads provenance, lineage or history next
    must not race it."""
    deadline = Deadline(timeout)

    async def finished() -> dict[str, Any] | None:
        async with session.get(f"{base}/api/v1/jobs/{job_id}") as response:
            assert response.status == 200, await response.text()
            job: dict[str, Any] = await response.json()
        return job if job["status"] in FINAL_STATUSES else None

    job: dict[str, Any] = await async_wait_for(
        finished, timeout=timeout, interval=0.1, what=f"job {job_id} finished"
    )
    await wait_recorded(session, base, job, timeout=max(deadline.remaining, 0.0))
    return job


_FINAL_TYPES = {
    "succeeded": ("image.processed", "image.reused"),
    "failed": ("job.failed",),
    "cancelled": ("job.cancelled",),
}


async def wait_recorded(
    session: aiohttp.ClientSession, base: str, job: dict[str, Any], *, timeout: float
) -> None:
    """Wait until the job's PROV document has its final activity (the last event of the
    job: the earlier ones came before it on the same queue)."""
    wanted = _FINAL_TYPES[job["status"]]

    async def recorded() -> bool:
        async with session.get(f"{base}/api/v1/jobs/{job['id']}/provenance") as response:
            document = await response.json() if response.status == 200 else {}
        types = {a.get("prov:type") for a in document.get("activity", {}).values()}
        return bool(types & set(wanted))

    await async_wait_for(
        recorded, timeout=timeout, what=f"provenance of job {job['id']} with one of {wanted}"
    )


@contextlib.asynccontextmanager
async def bearer_sessions(
    tokens: dict[str, str],
) -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    """One API client per principal (name: token), each sending its bearer token and
    keeping no cookies."""
    opened = {
        name: aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"Authorization": f"Bearer {token}"},
        )
        for name, token in tokens.items()
    }
    try:
        yield opened
    finally:
        for session in opened.values():
            await session.close()
