from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from messaging import BrokerSettings
from objectstore import S3Settings
from servicekit import ServiceSettings


class CouchSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    couchdb_url: str = "http://127.0.0.1:5984"
    couchdb_user: str = "admin"
    couchdb_password: SecretStr
    couchdb_db: str = Field(default="provenance", pattern=r"^[a-z][a-z0-9_$()+/-]*$")


class AuditSettings(CouchSettings, S3Settings):
    """What the completeness check reads: provenance and both buckets."""


class Settings(ServiceSettings, BrokerSettings, CouchSettings):
    provenancedb_ops_port: int = Field(default=8103, ge=1, le=65535)
    provenancedb_prefetch: int = Field(default=16, ge=1, le=1000)
