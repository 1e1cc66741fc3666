"""Security tests. Those of upload's guard (CSRF, API tokens, rate limits, uploads, the
web app) run against the session's mesh, or against a second upload process (same vhost,
buckets and database) with settings of its own (API tokens on, low rate limits, a proxy)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Mesh, free_port
from upload.tokens import token_hash


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


@contextlib.contextmanager
def tokens_replica(
    mesh: Mesh, logs: Path, tokens: dict[str, str], *, auditors: str, tag: str
) -> Iterator[Mesh]:
    """An upload replica with API tokens on for the principals `tokens` names (name:
    token), `auditors` among them reading every job: how the owner-scoping tests (cancel,
    retry, erase) see three principals act on each other's jobs."""
    entries = ",".join(f"{name}:{token_hash(token)}" for name, token in tokens.items())
    with upload_replica(
        mesh,
        logs,
        UPLOAD_API_TOKEN_HASHES=entries,
        UPLOAD_AUDITORS=auditors,
        UPLOAD_SESSION_SECRET=f"{tag}-test-secret-{uuid.uuid4().hex[:8]}",
    ) as replica:
        yield replica


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


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An API client like curl: it keeps no cookies, so it sends only what a test gives."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session
