from __future__ import annotations

from urllib.parse import quote

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BrokerSettings(BaseSettings):
    """How to reach RabbitMQ and which exchanges the mesh uses (names match the env vars)."""

    model_config = SettingsConfigDict(extra="ignore")

    rabbitmq_host: str = "127.0.0.1"
    rabbitmq_port: int = Field(default=5672, ge=1, le=65535)
    rabbitmq_user: str = "imagemesh"
    rabbitmq_password: SecretStr
    rabbitmq_vhost: str = "imagemesh"
    amqp_exchange_events: str = "imagemesh.events"
    amqp_exchange_prov: str = "imagemesh.provenance"
    amqp_max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Refuse to publish larger bodies; keep below the broker's max_message_size (128 MiB)."""

    def amqp_url(self) -> str:
        user = quote(self.rabbitmq_user, safe="")
        password = quote(self.rabbitmq_password.get_secret_value(), safe="")
        vhost = quote(self.rabbitmq_vhost, safe="")
        return f"amqp://{user}:{password}@{self.rabbitmq_host}:{self.rabbitmq_port}/{vhost}"
