"""Security tests. Those of upload's guard (CSRF, API tokens, rate limits, uploads, the
web app) run against the session's mesh, or against a second upload process (same vhost,
buckets and database) with settings of its own (API tokens on, low rate limits, a proxy)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Mesh, free_port


@contextlib.contextmanager
def upload_replica(mesh: Mesh, logs: Path, **settings: str) -> Iterator[Mesh]:
    """Another upload process on the session mesh's vhost, with `settings` on top of its
    environment; stopped (SIGTERM) afterwards."""
    replica = Mesh({**mesh.env, **settings, "UPLOAD_PORT": str(free_port())}, logs)
    replica.start("upload")
    try:
        replica.wait_ready("upload")
        yield replica
    finally:
        replica.stop("upload")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An API client like curl: it keeps no cookies, so it sends only what a test gives."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session
