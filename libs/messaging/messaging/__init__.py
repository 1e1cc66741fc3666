"""imagemesh messaging: the one way services talk.

The event envelope (CloudEvents 1.0 + job and causation ids), the topology (declared in
`topology`), confirmed persistent mandatory publishing, consuming with ack-after-work and
a parking lot for failures, RPC with timeouts, and per-message log context.

    async with Broker(settings, service="imageproc_runner") as broker:
        await broker.subscribe(RUNNER_UPLOADS, handle_upload, ImageUploaded)
        await broker.publish(ImageProcessed(...), cause=envelope)
        reply, output = await broker.call(IMAGEPROC_RUN, RunRequest(...), payload=data, timeout=60)

Each RPC route is declared once with its request and reply models (`topology`,
`contracts`); `messaging.testing` runs the same code without a server.
"""

from . import contracts, events, topology
from ._broker import Broker, Dispatch, MessageTooLarge, RpcHandler, Unroutable, Watcher
from ._consumer import (
    ConsumerBroker,
    Delivery,
    Handler,
    ParkHandler,
    delivery_attempts,
    retry_delay,
)
from ._context import MessageContext, PermanentError, Publisher
from ._envelope import Envelope, EnvelopeError, follow_up_id, new_event_id
from ._settings import BrokerSettings
from .rpc import RpcCall, RpcError, RpcMessage, RpcServer, RpcTimeout, RpcUnavailable

__all__ = [
    "Broker",
    "BrokerSettings",
    "ConsumerBroker",
    "Delivery",
    "Dispatch",
    "Envelope",
    "EnvelopeError",
    "Handler",
    "MessageContext",
    "MessageTooLarge",
    "ParkHandler",
    "PermanentError",
    "Publisher",
    "RpcCall",
    "RpcError",
    "RpcHandler",
    "RpcMessage",
    "RpcServer",
    "RpcTimeout",
    "RpcUnavailable",
    "Unroutable",
    "Watcher",
    "contracts",
    "delivery_attempts",
    "events",
    "follow_up_id",
    "new_event_id",
    "retry_delay",
    "topology",
]
