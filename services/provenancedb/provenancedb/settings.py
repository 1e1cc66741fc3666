"""Settings of provenancedb and its commands. CouchDB has three accounts, each used by
exactly one thing (least privilege, see `design.py`):

- the writer, `COUCHDB_USER` / `COUCHDB_PASSWORD`: provenancedb itself. A member of the
  provenance database that may only create event documents;
- the auditor, `COUCHDB_AUDITOR_USER` / `COUCHDB_AUDITOR_PASSWORD` (role `auditor`): reads,
  never writes; `python -m provenancedb.audit` and people in Fauxton;
- the server admin, `COUCHDB_ADMIN_USER` / `COUCHDB_ADMIN_PASSWORD`: only
  `python -m provenancedb.migrate` (and the local stack's provisioning), which creates the
  other two, the database, its `_security` and its design documents.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from messaging import BrokerSettings
from objectstore import S3Settings
from servicekit import ServiceSettings

#: A CouchDB user name: no leading underscore (system names), no colon (the `_users` id).
USER_NAME = r"^[^_:][^:]*$"

Login = tuple[str, SecretStr]
"""A user name and password."""


class CouchSettings(BaseSettings):
    """Where provenance lives, and who writes it."""

    model_config = SettingsConfigDict(extra="ignore")

    couchdb_url: str = "http://127.0.0.1:5984"
    couchdb_user: str = Field(default="provenancedb", pattern=USER_NAME)
    """The writer: the only user the design document lets create event documents."""
    couchdb_db: str = Field(default="provenance", pattern=r"^[a-z][a-z0-9_$()+/-]*$")


class WriterSettings(CouchSettings):
    couchdb_password: SecretStr
    """The writer's password."""

    def login(self) -> Login:
        return self.couchdb_user, self.couchdb_password


class AuditSettings(CouchSettings, S3Settings):
    """What the completeness check reads: provenance (as the auditor when
    `COUCHDB_AUDITOR_PASSWORD` is set, else as the writer) and both buckets."""

    couchdb_password: SecretStr | None = None
    couchdb_auditor_user: str = Field(default="auditor", pattern=USER_NAME)
    couchdb_auditor_password: SecretStr | None = None

    def login(self) -> Login:
        if self.couchdb_auditor_password is not None:
            return self.couchdb_auditor_user, self.couchdb_auditor_password
        if self.couchdb_password is not None:
            return self.couchdb_user, self.couchdb_password
        raise RuntimeError("set COUCHDB_AUDITOR_PASSWORD (or COUCHDB_PASSWORD) to read CouchDB")


class MigrateSettings(CouchSettings):
    """What `python -m provenancedb.migrate` needs: the server admin, and the passwords of
    the accounts it creates."""

    imagemesh_env: Literal["development", "production"] = "development"
    """`production`: refuse a development secret from `.env.example` (servicekit)."""
    couchdb_password: SecretStr
    """The writer's password (the writer's account is created or updated with it)."""
    couchdb_admin_user: str = Field(default="admin", pattern=USER_NAME)
    couchdb_admin_password: SecretStr
    couchdb_auditor_user: str = Field(default="auditor", pattern=USER_NAME)
    couchdb_auditor_password: SecretStr | None = None
    """Unset: no auditor account is created (members with the `auditor` role still read)."""

    def check_accounts(self) -> None:
        """Three different users (a RuntimeError says otherwise). Not a pydantic validator:
        a model-wide validation error would be reported with every value, passwords too."""
        names = [self.couchdb_admin_user, self.couchdb_user]
        if self.couchdb_auditor_password is not None:
            names.append(self.couchdb_auditor_user)
        if len(set(names)) != len(names):
            raise RuntimeError(
                "COUCHDB_ADMIN_USER, COUCHDB_USER (now the provenancedb writer, no longer the "
                "admin) and COUCHDB_AUDITOR_USER must be three different users"
            )

    def admin(self) -> Login:
        return self.couchdb_admin_user, self.couchdb_admin_password

    def writer(self) -> Login:
        return self.couchdb_user, self.couchdb_password

    def auditor(self) -> Login | None:
        if self.couchdb_auditor_password is None:
            return None
        return self.couchdb_auditor_user, self.couchdb_auditor_password


class Settings(ServiceSettings, BrokerSettings, WriterSettings):
    provenancedb_ops_port: int = Field(default=8103, ge=1, le=65535)
    provenancedb_prefetch: int = Field(default=64, ge=1, le=1000)
    """Events taken from the queue at once: at least what one group-commit write (and its
    linger) should carry."""
    provenancedb_commit_linger_ms: float = Field(default=50.0, ge=0, le=1000)
    """How long a provenance write waits for more events to join it (`GroupCommit`)."""
