"""Prometheus metrics of the messaging layer, in the process's default registry (served on
every service's `/metrics` by servicekit).

Labels are bounded: `queue` is a work queue or RPC queue the topology declares (never a
live or reply queue, whose names are per process), `route` an RPC route of the topology,
`outcome` and `reason` one of the few words listed with each metric. Never a job id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
"""Queue waits: milliseconds when workers keep up, hours when a backlog or retries build up."""
WORK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
"""Handling a message or an RPC: from a CouchDB write to a whole image pipeline."""

QUEUE_WAIT = Histogram(
    "imagemesh_queue_wait_seconds",
    "Time from an event's publication (its CloudEvents `time`) to a consumer taking it; "
    "for a retried message this includes its earlier attempts and back-off delays.",
    ["queue"],
    buckets=WAIT_BUCKETS,
)
HANDLING = Histogram(
    "imagemesh_message_handling_seconds",
    "Time a consumer spent on a message, by how it ended: acked, retried (sent to a delay "
    "queue) or parked.",
    ["queue", "outcome"],
    buckets=WORK_BUCKETS,
)
PARKED = Counter(
    "imagemesh_messages_parked_total",
    "Messages moved to a queue's parking lot, by reason: too_large, malformed, permanent, "
    "retries_exhausted, no_reply_to, forbidden_sender (its AMQP user may not publish it), "
    "delivery_limit (it came back unacknowledged as often as the queue allows).",
    ["queue", "reason"],
)
RETRIED = Counter(
    "imagemesh_messages_retried_total",
    "Failed messages sent to a delay queue, to be tried again after a back-off.",
    ["queue"],
)
HANDED_BACK = Counter(
    "imagemesh_messages_handed_back_total",
    "Messages a consumer held without handling and put back at the tail of their queue, "
    "by reason: held_too_long (near the broker's consumer_timeout), shutdown.",
    ["queue", "reason"],
)
IN_FLIGHT = Gauge(
    "imagemesh_messages_in_flight",
    "Messages (events or RPC requests) being handled right now.",
    ["queue"],
)
RPC_CLIENT = Histogram(
    "imagemesh_rpc_client_seconds",
    "RPC calls as the caller sees them, request to reply, by outcome: ok, error (the server "
    "answered with an error), timeout, unavailable (nobody serves the route), "
    "broker_unavailable, too_large.",
    ["route", "outcome"],
    buckets=WORK_BUCKETS,
)
RPC_SERVER = Histogram(
    "imagemesh_rpc_server_seconds",
    "RPC requests as the server handles them, until the reply is published, by outcome: ok, "
    "error (refused with a code), internal (an unexpected exception), too_large.",
    ["route", "outcome"],
    buckets=WORK_BUCKETS,
)

RPC_OUTCOMES = {
    "rpc_timeout": "timeout",
    "rpc_unavailable": "unavailable",
    "broker_unavailable": "broker_unavailable",
}
"""Client-side RpcError codes that say the call itself failed (else: `error`)."""
