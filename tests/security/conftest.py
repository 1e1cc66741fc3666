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
from tests.e2e.helpers import bearer_sessions
from upload.tokens import new_token, token_hash

_RUN = uuid.uuid4().hex[:8]
ALICE, BOB, CAROL = f"alice-{_RUN}", f"bob-{_RUN}", f"carol-{_RUN}"
"""The owner-scoping tests' principals (cancel, retry, erase): ALICE owns the jobs, BOB is
another user, CAROL an auditor (she reads every job)."""
TOKENS = {name: new_token() for name in (ALICE, BOB, CAROL)}


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


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An API client like curl: it keeps no cookies, so it sends only what a test gives."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session


@pytest.fixture(scope="module")
def scoped(
    mesh: Mesh, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    """An upload replica with API tokens for ALICE, BOB and CAROL (the auditor), one per
    test module."""
    tag = request.module.__name__.rsplit(".", 1)[-1]
    logs = tmp_path_factory.mktemp(tag)
    with tokens_replica(mesh, logs, TOKENS, auditors=CAROL, tag=tag) as replica:
        yield replica


@pytest.fixture
async def principals() -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    """ALICE's, BOB's and CAROL's API clients, by name."""
    async with bearer_sessions(TOKENS) as opened:
        yield opened
