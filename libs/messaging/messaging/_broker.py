"""One robust RabbitMQ connection per process: confirmed publishing, consuming with
ack-after-work and parking of failures, and RPC.

The `Broker` is built in layers, each in a module of its own: `_core` (connection,
channels, confirmed publishing, consumer upkeep), `_consuming` (subscriptions, watchers,
parking, retries, hand-backs) and `_rpc_broker` (RPC server and client)."""

from __future__ import annotations

from ._consuming import Dispatch, Watcher
from ._core import (
    FLOW_CHECK_TIMEOUT,
    LAST_ERROR_HEADER,
    PARK_ERROR_HEADER,
    PUBLISH_TIMEOUT,
    QUEUE_HEADER,
    REQUEUE_PAUSE,
    WATCHDOG_INTERVAL,
    MessageTooLarge,
    Unroutable,
)
from ._rpc_broker import _RpcBroker
from .rpc import RpcHandler

__all__ = [
    "FLOW_CHECK_TIMEOUT",
    "LAST_ERROR_HEADER",
    "PARK_ERROR_HEADER",
    "PUBLISH_TIMEOUT",
    "QUEUE_HEADER",
    "REQUEUE_PAUSE",
    "WATCHDOG_INTERVAL",
    "Broker",
    "Dispatch",
    "MessageTooLarge",
    "RpcHandler",
    "Unroutable",
    "Watcher",
]


class Broker(_RpcBroker):
    """The gateway between a service and RabbitMQ. Use as `async with Broker(...) as broker`."""
