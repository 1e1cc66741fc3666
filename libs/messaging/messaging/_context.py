"""What a handler gets with each message: its envelope, its attempt, and a way to publish
follow-up events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ._envelope import Envelope
from ._settings import BrokerSettings
from .events import Event


class Publisher(Protocol):
    """What a message's context needs of the broker (a `Broker` is one; so is
    `messaging.testing.MemoryBroker`)."""

    settings: BrokerSettings

    async def publish(
        self, event: Event, *, cause: Envelope | None = None, key: str = ""
    ) -> Envelope: ...


class PermanentError(Exception):
    """Raised by a handler when a message can never succeed: it is parked at once."""


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What a handler knows about the message it handles, and how it answers it."""

    envelope: Envelope
    broker: Publisher
    attempt: int = 1
    """Which attempt at this message this is (1 on first delivery; retries count up)."""

    @property
    def last_attempt(self) -> bool:
        """Whether a failure now parks the message instead of retrying it."""
        return self.attempt >= self.broker.settings.amqp_max_attempts

    async def publish(self, event: Event, *, key: str = "") -> Envelope:
        """Publish a follow-up event. Its id derives from this message's id (+ `key` when one
        message causes several events of a type), so a redelivery publishes the same ids."""
        return await self.broker.publish(event, cause=self.envelope, key=key)
