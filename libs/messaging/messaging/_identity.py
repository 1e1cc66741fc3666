"""Who sent a message, as the broker vouches for it.

Every publish carries the AMQP `user_id` property, and RabbitMQ refuses (PRECONDITION_FAILED)
one that is not the publishing connection's own user: a receiver can trust it, and no
header or body field can stand in for it. A service's broker user is named
`<RABBITMQ_SERVICE_USER_PREFIX><service>` (as `messaging.provision` creates it), so the
user names the service. Users in `AMQP_OPERATOR_USERS` (the administrator, who holds every
right on the vhost anyway) may send anything; any other user is nobody.

A message a consumer re-publishes itself (to retry or park it) carries the consumer's own
`user_id`; the user that first published it travels in `SENDER_HEADER`, which is believed
only on such copies (and on an operator's re-publication of a parked one), never on a
message another user published.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aio_pika.abc import AbstractIncomingMessage

from ._settings import BrokerSettings
from .constants import SERVICES

OPERATOR: Final = "operator"
"""The sender of a message published by an operator user (see `AMQP_OPERATOR_USERS`)."""
SENDER_HEADER: Final = "x-imagemesh-sender"
"""On a retried or parked copy: the broker user that first published the message."""


@dataclass(frozen=True, slots=True)
class Identities:
    own_user: str
    prefix: str
    operators: frozenset[str]

    @classmethod
    def of(cls, settings: BrokerSettings) -> Identities:
        return cls(
            settings.rabbitmq_user,
            settings.rabbitmq_service_user_prefix,
            frozenset(settings.amqp_operator_users),
        )

    def service_of(self, user: str | None) -> str | None:
        """The service whose broker user is `user`, OPERATOR for an operator user, None for
        any other user (or none)."""
        if not user:
            return None
        if user in self.operators:
            return OPERATOR
        if user.startswith(self.prefix) and user[len(self.prefix) :] in SERVICES:
            return user[len(self.prefix) :]
        return None

    def origin_user(self, message: AbstractIncomingMessage) -> str | None:
        """The broker user that first published `message`."""
        user = message.user_id
        if user == self.own_user or user in self.operators:
            claimed = (message.headers or {}).get(SENDER_HEADER)
            if isinstance(claimed, bytes | bytearray):
                claimed = bytes(claimed).decode("utf-8", "replace")
            if isinstance(claimed, str) and claimed:
                return claimed
        return user

    def sender(self, message: AbstractIncomingMessage) -> str | None:
        """The service that first published `message` (OPERATOR, or None for nobody)."""
        return self.service_of(self.origin_user(message))


def may_send(sender: str | None, allowed: tuple[str, ...]) -> bool:
    return sender is not None and (sender == OPERATOR or sender in allowed)


def describe(sender: str | None, user: str | None) -> str:
    """For error messages and logs: who a refused sender is."""
    return f"service {sender!r}" if sender else f"broker user {user!r} (no service)"
