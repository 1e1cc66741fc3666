"""`python -m provenancedb.migrate` against the real server: it provisions a database and
its users idempotently, brings a changed password or role up to date, and refuses to run
with anything but the server admin, or with the admin as the writer."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from provenancedb.design import design_document, security_object
from provenancedb.migrate import migrate
from provenancedb.settings import AuditSettings, MigrateSettings
from tests.conftest import ROOT, couch, settings_from

pytestmark = pytest.mark.integration


@pytest.fixture
def own(test_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A database and a writer of their own (not the shared `provenancedb` user), without
    an auditor account; both removed afterwards."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        **test_env,
        "COUCHDB_DB": f"migrate-test-{suffix}",
        "COUCHDB_USER": f"test-writer-{suffix}",
        "COUCHDB_PASSWORD": "first",
    }
    del env["COUCHDB_AUDITOR_PASSWORD"]
    yield env
    path = f"/_users/org.couchdb.user:{env['COUCHDB_USER']}"
    existing = couch(env, "GET", path)
    couch(env, "DELETE", f"{path}?rev={existing['_rev']}")
    couch(env, "DELETE", f"/{env['COUCHDB_DB']}")


def _session_roles(env: dict[str, str], login: tuple[str, str]) -> list[str]:
    answer = couch(env, "GET", "/_session", login=login)
    assert answer["userCtx"]["name"] == login[0]
    return list(answer["userCtx"]["roles"])


async def test_migrate_provisions_once_and_then_changes_nothing(own: dict[str, str]) -> None:
    settings: MigrateSettings = settings_from(own, MigrateSettings)
    db, writer = own["COUCHDB_DB"], own["COUCHDB_USER"]

    assert await migrate(settings) == [
        f"user {writer!r} created (roles [])",
        f"{db}: _security set",
        f"{db}: _design/provenance installed",
    ]
    assert await migrate(settings) == []

    assert couch(own, "GET", f"/{db}/_security") == security_object("admin", writer)
    ddoc = couch(own, "GET", f"/{db}/_design/provenance")
    assert {key: ddoc[key] for key in design_document(writer)} == design_document(writer)
    assert _session_roles(own, (writer, "first")) == []


async def test_migrate_brings_a_changed_password_up_to_date(own: dict[str, str]) -> None:
    writer = own["COUCHDB_USER"]
    await migrate(settings_from(own, MigrateSettings))
    changed = settings_from({**own, "COUCHDB_PASSWORD": "second"}, MigrateSettings)

    assert await migrate(changed) == [f"user {writer!r} updated (roles [])"]
    assert _session_roles(own, (writer, "second")) == []
    assert await migrate(changed) == []


async def test_migrate_refuses_a_user_who_is_not_the_server_admin(own: dict[str, str]) -> None:
    await migrate(settings_from(own, MigrateSettings))
    as_writer = {
        **own,
        "COUCHDB_ADMIN_USER": own["COUCHDB_USER"],
        "COUCHDB_ADMIN_PASSWORD": "first",
        "COUCHDB_USER": "someone-else",
    }
    with pytest.raises(RuntimeError, match="is not a CouchDB server admin"):
        await migrate(settings_from(as_writer, MigrateSettings))


def test_the_writer_cannot_be_the_admin() -> None:
    settings = MigrateSettings(
        couchdb_user="admin",
        couchdb_password=SecretStr("writer-secret"),
        couchdb_admin_password=SecretStr("admin-secret"),
    )
    with pytest.raises(RuntimeError, match="three different users") as refused:
        settings.check_accounts()
    assert "secret" not in str(refused.value)


def test_the_command_says_in_one_line_why_it_could_not_run(test_env: dict[str, str]) -> None:
    env = {**test_env, "COUCHDB_ADMIN_PASSWORD": "not-the-password", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "provenancedb.migrate"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "provenancedb.migrate: could not provision CouchDB: COUCHDB_ADMIN_USER 'admin' with "
        "COUCHDB_ADMIN_PASSWORD is not a CouchDB server admin"
    ]
    assert "not-the-password" not in result.stdout + result.stderr


def test_the_audit_reads_as_the_auditor_else_as_the_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("USER", "PASSWORD", "AUDITOR_USER", "AUDITOR_PASSWORD"):
        monkeypatch.delenv(f"COUCHDB_{name}", raising=False)
    both = AuditSettings(
        s3_secret_key=SecretStr("s"),
        couchdb_password=SecretStr("w"),
        couchdb_auditor_password=SecretStr("a"),
    )
    assert both.login() == ("auditor", SecretStr("a"))
    writer_only = AuditSettings(s3_secret_key=SecretStr("s"), couchdb_password=SecretStr("w"))
    assert writer_only.login() == ("provenancedb", SecretStr("w"))
    with pytest.raises(RuntimeError, match="COUCHDB_AUDITOR_PASSWORD"):
        AuditSettings(s3_secret_key=SecretStr("s")).login()
