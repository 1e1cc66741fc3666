"""A service's broker for its app's lifetime: every service's app opens one the same way.

The broker is named for the service (its connection name, its published events' source),
drains in-flight handlers for up to the service's shutdown timeout when the app stops, and
is the app's `rabbitmq` readiness check.
"""

from __future__ import annotations

from aiohttp import web

from servicekit import CleanupContext, resource

from ._broker import Broker
from ._settings import BrokerSettings


def broker_resource(
    key: web.AppKey[Broker], settings: BrokerSettings, service: str, shutdown_timeout: float
) -> CleanupContext:
    """A cleanup context that opens the service's broker, stores it under `key` and adds
    the `rabbitmq` readiness check."""
    return resource(
        key,
        lambda: Broker(settings, service=service, shutdown_timeout=shutdown_timeout),
        readiness=("rabbitmq", Broker.ping),
    )
