from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from messaging import BrokerSettings
from objectstore import S3Settings
from pipeline import ImageRulesSettings
from servicekit import ServiceSettings

from .tokens import entry, parse_entry


class Settings(ServiceSettings, BrokerSettings, S3Settings, ImageRulesSettings):
    upload_port: int = Field(default=8000, ge=1, le=65535)
    upload_max_queued: int = Field(default=1000, ge=1)
    """New jobs are refused (503, Retry-After) while more than this many wait for a runner."""
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)
    """How long the API waits for provenancedb (job status, recording a new job)."""
    upload_fauxton_url: str = "http://localhost:5984/_utils/#database/provenance"
    """Where operators browse provenance (linked from the job page)."""
    upload_rabbitmq_console_url: str = "http://localhost:15672/"
    """Where operators watch the queues (linked from the job page)."""
    upload_api_token_hashes: Annotated[tuple[str, ...], NoDecode] = ()
    """`NAME:SHA256HEX` of each API token, comma-separated (`python -m upload.tokens new NAME`
    makes one; a bare hash is named by its first 8 hex digits). The name is the principal
    the token speaks for. Empty: no token is needed and everyone is `local`. Otherwise every
    /api/ request needs `Authorization: Bearer <token>` or a signed-in session."""
    upload_trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()
    """Addresses or networks of the reverse proxies in front of upload, comma-separated:
    only their `X-Forwarded-For` / `X-Forwarded-Proto` are believed."""
    upload_rate_limit_per_minute: int = Field(default=600, ge=0)
    """New jobs (POST /api/v1/jobs) per client per minute, sustained; 0: no limit."""
    upload_rate_limit_burst: int = Field(default=120, ge=1)
    """New jobs a client may submit at once before the rate applies."""
    upload_api_rate_limit_per_minute: int = Field(default=12000, ge=0)
    """Other /api/ requests per client per minute (job status, results, streams); 0: none."""
    upload_api_rate_limit_burst: int = Field(default=2400, ge=1)

    @field_validator("upload_api_token_hashes", "upload_trusted_proxies", mode="before")
    @classmethod
    def _split_upload_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("upload_api_token_hashes")
    @classmethod
    def _hashes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Normalised to NAME:hex, so a bare hash and its named form mean the same.
        return tuple(entry(*parse_entry(part)) for part in value)
