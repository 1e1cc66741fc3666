"""imagemesh messaging: the one way services talk.

The event envelope (CloudEvents 1.0 + job and causation ids), the topology (declared in
`topology`), confirmed persistent mandatory publishing, consuming with ack-after-work and
a parking lot for failures, RPC with timeouts, and per-message log context.

    async with Broker(settings, service="imageproc_runner") as broker:
        await broker.subscribe(RUNNER_UPLOADS, handle_upload, ImageUploaded)
        await broker.publish(ImageProcessed(...), cause=envelope)
        reply = await broker.call(IMAGEPROC_RUN, RpcMessage(meta, payload), timeout=60)
"""

from . import events, topology
from ._broker import Broker, Dispatch, MessageTooLarge, RpcHandler, Unroutable, Watcher
from ._consumer import Delivery, Handler, ParkHandler, delivery_attempts, retry_delay
from ._context import MessageContext, PermanentError
from ._envelope import Envelope, EnvelopeError, follow_up_id, new_event_id
from ._settings import BrokerSettings
from .rpc import RpcError, RpcMessage, RpcTimeout, RpcUnavailable

__all__ = [
    "Broker",
    "BrokerSettings",
    "Delivery",
    "Dispatch",
    "Envelope",
    "EnvelopeError",
    "Handler",
    "MessageContext",
    "MessageTooLarge",
    "ParkHandler",
    "PermanentError",
    "RpcError",
    "RpcHandler",
    "RpcMessage",
    "RpcTimeout",
    "RpcUnavailable",
    "Unroutable",
    "Watcher",
    "delivery_attempts",
    "events",
    "follow_up_id",
    "new_event_id",
    "retry_delay",
    "topology",
]
