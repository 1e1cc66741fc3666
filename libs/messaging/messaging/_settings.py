from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from servicekit import split_commas


class BrokerSettings(BaseSettings):
    """How to reach RabbitMQ and which exchanges the mesh uses (names match the env vars)."""

    model_config = SettingsConfigDict(extra="ignore")

    rabbitmq_host: str = "127.0.0.1"
    rabbitmq_port: int = Field(default=5672, ge=1, le=65535)
    rabbitmq_user: str = "imagemesh"
    rabbitmq_password: SecretStr
    rabbitmq_vhost: str = "imagemesh"
    rabbitmq_service_user_prefix: str = ""
    """Each service's broker user is named `<prefix><service>` (the prefix is for tests:
    users of their own). A receiver names a message's sender from its AMQP `user_id`, which
    the broker vouches for, this way."""
    amqp_operator_users: Annotated[tuple[str, ...], NoDecode] = ("imagemesh",)
    """Broker users trusted to send anything (env: comma-separated): the administrator,
    whose operator tools re-publish parked messages. It holds every right on the vhost
    anyway. A service's user is never one: listing it would let that service speak for
    every other."""
    amqp_exchange_events: str = "imagemesh.events"
    amqp_exchange_prov: str = "imagemesh.provenance"
    amqp_declare_exchanges: bool = True
    """Declare the exchanges at connect. Off for a service whose user may not configure
    them (least privilege): they are provisioned, and only checked to exist."""
    amqp_max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Refuse to publish (or consume) larger bodies; below the broker's 128 MiB limit."""
    amqp_retry_delays: Annotated[tuple[float, ...], NoDecode] = (1.0, 5.0, 30.0, 120.0, 300.0)
    """Back-off tiers in seconds (env: comma-separated). A failed message waits in the
    tier for its attempt (the last tier repeats), then goes back to its queue."""
    amqp_max_attempts: int = Field(default=8, ge=1, le=100)
    """Deliveries before a failing message is parked."""

    @field_validator("amqp_retry_delays", mode="before")
    @classmethod
    def _split_retry_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("amqp_operator_users", mode="before")
    @classmethod
    def _split_users(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("amqp_retry_delays")
    @classmethod
    def _positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(delay <= 0 for delay in value):
            raise ValueError("give at least one delay, each above 0 seconds")
        return value

    def amqp_url(self) -> str:
        user = quote(self.rabbitmq_user, safe="")
        password = quote(self.rabbitmq_password.get_secret_value(), safe="")
        vhost = quote(self.rabbitmq_vhost, safe="")
        return f"amqp://{user}:{password}@{self.rabbitmq_host}:{self.rabbitmq_port}/{vhost}"
