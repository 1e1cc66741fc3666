"""A provenance database of its own per test, provisioned as `python -m provenancedb.migrate`
provisions one (users, `_security`, design document, indexes), opened as provenancedb opens
it: as the writer, which may only create documents."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from provenancedb.migrate import migrate
from provenancedb.settings import MigrateSettings, Settings
from provenancedb.store import ProvenanceStore, open_store
from tests.conftest import couch, settings_from

OpenStore = Callable[[str], AbstractAsyncContextManager[ProvenanceStore]]


@asynccontextmanager
async def provisioned_store(env: dict[str, str], prefix: str) -> AsyncIterator[ProvenanceStore]:
    db = f"{prefix}-{uuid.uuid4().hex[:8]}"
    env = {**env, "COUCHDB_DB": db}
    await migrate(settings_from(env, MigrateSettings))
    settings: Settings = settings_from(env, Settings)
    try:
        async with open_store(settings, settings.login()) as opened:
            yield opened
    finally:
        couch(env, "DELETE", f"/{db}")


@pytest.fixture
def writer_store(test_env: dict[str, str]) -> OpenStore:
    """`writer_store(prefix)`: a provisioned database of its own, as the writer."""
    return lambda prefix: provisioned_store(test_env, prefix)
