from __future__ import annotations

from pydantic import Field, SecretStr

from messaging import BrokerSettings
from servicekit import ServiceSettings


class Settings(ServiceSettings, BrokerSettings):
    couchdb_url: str = "http://127.0.0.1:5984"
    couchdb_user: str = "admin"
    couchdb_password: SecretStr
    couchdb_db: str = Field(default="provenance", pattern=r"^[a-z][a-z0-9_$()+/-]*$")
    provenancedb_ops_port: int = Field(default=8103, ge=1, le=65535)
    provenancedb_prefetch: int = Field(default=16, ge=1, le=1000)
