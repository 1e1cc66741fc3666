"""After an upgrade that adds or changes views, migrate builds their indexes before it is
done, so that the first user to search does not wait minutes (and time out) while PouchDB
Server indexes the whole database on that read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from provenancedb import migrate as migration
from provenancedb.design import DESIGN_VIEWS
from provenancedb.settings import MigrateSettings
from provenancedb.store import ProvenanceStore
from tests.conftest import couch, settings_from
from tests.provenancedb.conftest import OpenStore
from tests.provenancedb.test_history import ALICE, _trail


@pytest.fixture
async def store(writer_store: OpenStore) -> AsyncIterator[ProvenanceStore]:
    async with writer_store("migrate-views") as opened:
        yield opened


@pytest.mark.integration
async def test_migrate_builds_the_views_an_upgrade_adds_or_changes(
    store: ProvenanceStore, test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = store._db.id
    assert await store.views_to_index() == []
    await store.record_all(_trail("before-upgrade", "succeeded", ALICE, 0))
    # As an older release left the design: one view missing, one defined otherwise.
    missing, changed = list(DESIGN_VIEWS)[:2]
    ddoc = couch(test_env, "GET", f"/{db}/_design/provenance")
    del ddoc["views"][missing]
    ddoc["views"][changed] = {"map": "function (doc) { emit(doc._id, null); }"}
    couch(test_env, "PUT", f"/{db}/_design/provenance", json.dumps(ddoc).encode())
    assert await store.views_to_index() == [missing, changed]

    monkeypatch.setattr(migration, "INDEX_AHEAD_MIN_DOCS", 1)
    settings = settings_from({**test_env, "COUCHDB_DB": db}, MigrateSettings)
    changes = await migration.migrate(settings)
    (indexed,) = [change for change in changes if "views indexed" in change]
    assert indexed.startswith(f"{db}: views indexed in ")
    assert indexed.endswith(f": {missing}, {changed}")
    assert await store.views_to_index() == []
    again = await migration.migrate(settings)
    assert not any("views indexed" in change for change in again)


class _Indexing:
    """A store whose server is still indexing: every read times out."""

    def __init__(self) -> None:
        self.reads = 0

    async def index_view(self, name: str) -> None:
        self.reads += 1
        raise TimeoutError


async def test_migrate_gives_up_on_an_index_past_its_deadline_saying_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 10.0
        return now[0]

    indexing = _Indexing()
    with pytest.raises(RuntimeError, match=r"^view jobs not indexed after \d+ s; .* again"):
        await migration.index_views(
            indexing,  # type: ignore[arg-type]
            "db",
            ["jobs"],
            deadline=30,
            clock=clock,
        )
    assert indexing.reads == 3
    assert "CouchDB indexes view jobs" in capsys.readouterr().err
