from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from messaging import BrokerSettings
from objectstore import S3Settings
from pipeline import ImageRulesSettings
from servicekit import ServiceSettings, split_commas

from .signing import principal_key
from .tokens import entry, parse_entry, valid_principal

MIN_SESSION_SECRET = 16
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class Settings(ServiceSettings, BrokerSettings, S3Settings, ImageRulesSettings):
    upload_port: int = Field(default=8000, ge=1, le=65535)
    upload_max_queued: int = Field(default=1000, ge=1)
    """New jobs are refused (503, Retry-After) while more than this many wait for a runner."""
    upload_max_queued_per_principal: int = Field(default=100, ge=1)
    """A principal's new jobs are refused (429 `too_many_queued`, Retry-After) while this
    many of its jobs wait (queued, not started): one client cannot fill the queue."""
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
    only their `X-Forwarded-For` / `X-Forwarded-Proto` (and proxy user header) are believed."""
    upload_auditors: Annotated[tuple[str, ...], NoDecode] = ()
    """Principals who read every job and see who uploaded it (address, user agent),
    comma-separated. Everyone else reads only their own jobs."""
    upload_proxy_user_header: str = ""
    """Behind an authenticating proxy (oauth2-proxy: `X-Auth-Request-User` or
    `X-Forwarded-User`): the header naming the signed-in user, believed only from
    `UPLOAD_TRUSTED_PROXIES`. Empty: off (the proxy must strip it from clients anyway)."""
    upload_session_secret: SecretStr | None = None
    """Encrypts the web app's sign-in cookie; required with API tokens (at least 16
    characters; a long random string, e.g. `python -c 'import secrets; print(secrets.
    token_urlsafe(32))'`). Changing it signs everyone out."""
    upload_max_streams: int = Field(default=1000, ge=1)
    """Progress streams (GET /api/v1/jobs/{id}/events) open at once on this replica;
    beyond: 429 with Retry-After."""
    upload_max_streams_per_principal: int = Field(default=20, ge=1)
    """Progress streams one principal may hold open at once on this replica."""
    upload_max_concurrent_uploads: int = Field(default=32, ge=1)
    """Uploads (POST /api/v1/jobs bodies) received at once on this replica; beyond: 503
    with Retry-After. Each holds up to UPLOAD_SPOOL_MEMORY_BYTES of memory and up to
    IMAGE_MAX_BYTES in UPLOAD_SPOOL_DIR."""
    upload_max_concurrent_uploads_per_client: int = Field(default=4, ge=1)
    """Uploads one client (its principal, or its address without tokens) may send at once
    on this replica; beyond: 429 with Retry-After."""
    upload_max_concurrent_downloads: int = Field(default=64, ge=1)
    """Images (GET /api/v1/jobs/{id}/input and /result) being sent at once on this replica;
    beyond: 503 with Retry-After. Each is spooled like an upload (UPLOAD_SPOOL_*), so a
    reader that stalls holds a file, not memory."""
    upload_max_concurrent_downloads_per_client: int = Field(default=8, ge=1)
    """Images one client may be receiving at once on this replica; beyond: 429."""
    upload_zip_max_jobs: int = Field(default=100, ge=1)
    """Results one zip (GET /api/v1/results.zip) may hold; more ids: 413. A zip being
    sent holds one download slot (UPLOAD_MAX_CONCURRENT_DOWNLOADS[_PER_CLIENT])."""
    upload_zip_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    """The results' total size one zip may hold, from their stored sizes, checked
    before anything is sent; more: 413."""
    upload_body_timeout_seconds: float = Field(default=30.0, gt=0)
    """The longest pause in a body, either way: a sender silent for longer is cut (408),
    and so is a reader that takes nothing of an image for longer."""
    upload_body_min_bytes_per_second: int = Field(default=32 * 1024, ge=0)
    """The slowest average rate of an upload's body: it is cut (408) once it has taken
    UPLOAD_BODY_TIMEOUT_SECONDS + Content-Length / this (25 MiB: ~14 min); 0: no deadline."""
    upload_spool_memory_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)
    """How much of an upload's file is held in memory; the rest goes to an unnamed
    temporary file in UPLOAD_SPOOL_DIR."""
    upload_spool_dir: str = ""
    """Where uploads are spooled: a disk-backed directory with room for
    UPLOAD_MAX_CONCURRENT_UPLOADS x IMAGE_MAX_BYTES (not a tmpfs: that is memory).
    Empty: the system's temporary directory (TMPDIR)."""
    upload_rate_limit_per_minute: int = Field(default=600, ge=0)
    """New jobs (POST /api/v1/jobs) per client per minute, sustained; 0: no limit."""
    upload_rate_limit_burst: int = Field(default=120, ge=1)
    """New jobs a client may submit at once before the rate applies."""
    upload_api_rate_limit_per_minute: int = Field(default=12000, ge=0)
    """Other /api/ requests per client per minute (job status, results, streams); 0: none."""
    upload_api_rate_limit_burst: int = Field(default=2400, ge=1)
    upload_public_url: str = ""
    """The service's address as clients reach it (e.g. `https://images.example.org`):
    webhook bodies give absolute links under it. Empty: the links are paths."""
    upload_webhook_secret: SecretStr | None = None
    """The master secret of webhook signatures: each principal signs with a key derived
    from it and its name (`GET /api/v1/webhooks/secret` gives a principal its own). Unset:
    a job with a `callback_url` is refused (400), as nothing would be signed."""
    upload_webhook_key_generations: Annotated[tuple[tuple[str, int], ...], NoDecode] = ()
    """`principal:N` pairs, comma-separated: the generation of each principal's webhook key
    (`signing.principal_key`; 1 when not named). Raising one rotates that principal's key
    alone; every replica must say the same."""
    webhook_allowed_networks: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()
    """Networks a webhook may be sent to beside globally routable addresses (CIDRs,
    comma-separated). Empty (production): loopback, private, link-local and every other
    non-global target is refused."""

    @field_validator(
        "upload_api_token_hashes",
        "upload_trusted_proxies",
        "upload_auditors",
        "webhook_allowed_networks",
        mode="before",
    )
    @classmethod
    def _split_upload_lists(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("upload_api_token_hashes")
    @classmethod
    def _hashes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Normalised to NAME:hex, so a bare hash and its named form mean the same.
        return tuple(entry(*parse_entry(part)) for part in value)

    @field_validator("upload_auditors")
    @classmethod
    def _auditors(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(valid_principal(name) for name in value):
            raise ValueError("principal names: letters, digits and . _ @ + - (at most 128)")
        return value

    @field_validator("upload_webhook_key_generations", mode="before")
    @classmethod
    def _generations(cls, value: object) -> object:
        parts = split_commas(value)
        if not isinstance(parts, tuple):
            return value
        generations: dict[str, int] = {}
        for part in parts:
            name, _, number = part.rpartition(":")
            if not valid_principal(name) or not number.isdigit() or int(number) < 1:
                raise ValueError("principal:N pairs (N >= 1), e.g. alice:2,bob:3")
            if name in generations:
                raise ValueError(f"{name} is named twice")
            generations[name] = int(number)
        return tuple(generations.items())

    def webhook_key_generation(self, principal: str) -> int:
        """The generation of `principal`'s webhook key (1 unless configured)."""
        return dict(self.upload_webhook_key_generations).get(principal, 1)

    def webhook_key(self, principal: str) -> str | None:
        """The key `principal`'s webhooks are signed with now; None: webhooks are off."""
        if self.upload_webhook_secret is None:
            return None
        secret = self.upload_webhook_secret.get_secret_value()
        return principal_key(secret, principal, self.webhook_key_generation(principal))

    @field_validator("upload_proxy_user_header")
    @classmethod
    def _header(cls, value: str) -> str:
        if value and not _HEADER.match(value):
            raise ValueError("an HTTP header name, e.g. X-Auth-Request-User")
        return value

    @field_validator("upload_public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/?#\s]+$", value.rstrip("/")):
            raise ValueError("an http(s) origin such as https://images.example.org, no path")
        return value.rstrip("/")

    @field_validator("upload_webhook_secret", mode="before")
    @classmethod
    def _webhook_secret(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None  # set but empty (compose passes it through): webhooks off
        return value

    @field_validator("upload_webhook_secret", mode="after")
    @classmethod
    def _webhook_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SESSION_SECRET:
            raise ValueError(f"at least {MIN_SESSION_SECRET} characters")
        return value

    @field_validator("upload_session_secret", mode="after")
    @classmethod
    def _session_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # A field validator (not a model one): its errors name the setting, never a value.
        if value is None and info.data.get("upload_api_token_hashes"):
            raise ValueError("required with UPLOAD_API_TOKEN_HASHES (it encrypts the sign-in)")
        if value is not None and len(value.get_secret_value()) < MIN_SESSION_SECRET:
            raise ValueError(f"at least {MIN_SESSION_SECRET} characters")
        return value
