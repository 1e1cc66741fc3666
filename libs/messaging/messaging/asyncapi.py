"""The AsyncAPI 3.0 document of the mesh, generated from the code that defines it.

Channels are the exchanges (`topology`), messages are the events (`events`, their JSON
Schemas from the models, their CloudEvents headers from the envelope), operations are who
publishes each event (`Event.published_by`), who consumes which queue (`topology`) and who
serves which RPC route. Nothing here is written by hand twice, so it cannot drift.

    python -m messaging.asyncapi > asyncapi.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import topology
from ._settings import BrokerSettings
from .events import ALL_EVENTS, Event, ExchangeKind
from .queries import REQUESTS

SCHEMA_REF = "#/components/schemas/{model}"
CHANNELS: dict[ExchangeKind, str] = {"events": "events", "provenance": "provenance"}
CLOUDEVENTS_HEADERS = {
    "type": "object",
    "description": "CloudEvents 1.0 binary mode over AMQP (`ce-` application properties); "
    "the AMQP correlation_id is the job id, message_id the event id.",
    "required": ["ce-specversion", "ce-id", "ce-type", "ce-source", "ce-time"],
    "properties": {
        "ce-specversion": {"type": "string", "const": "1.0"},
        "ce-id": {"type": "string", "description": "event id; follow-ups derive theirs"},
        "ce-type": {"type": "string", "description": "the event type = the routing key"},
        "ce-source": {"type": "string", "description": "/imagemesh/<service>"},
        "ce-time": {"type": "string", "format": "date-time"},
        "ce-subject": {"type": "string", "description": "the job id"},
        "ce-causationid": {"type": "string", "description": "the event that caused this one"},
        "ce-agentversion": {"type": "string", "description": "version of the publisher"},
        "ce-agenthost": {"type": "string", "description": "host of the publisher"},
    },
}


def asyncapi_document(settings: BrokerSettings, *, version: str) -> dict[str, Any]:
    """The whole document, for the broker `settings` name (exchanges, vhost, server)."""
    models: list[type[BaseModel]] = [*ALL_EVENTS, *REQUESTS.values()]
    _, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=SCHEMA_REF
    )
    schemas: dict[str, Any] = definitions.get("$defs", {})
    messages = {event.__name__: _message(event) for event in ALL_EVENTS}
    messages |= {
        model.__name__: _request_message(route, model) for route, model in REQUESTS.items()
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "imagemesh mesh",
            "version": version,
            "description": "How imagemesh's services talk over RabbitMQ: domain events drive "
            "work, provenance events record steps, RPC runs pipelines and answers questions. "
            "Every publish is persistent, mandatory and confirmed.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": f"{settings.rabbitmq_host}:{settings.rabbitmq_port}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "pathname": f"/{settings.rabbitmq_vhost}",
            }
        },
        "channels": _event_channels(settings) | _rpc_channels(settings),
        "operations": _operations(),
        "components": {
            "messages": messages | {"RpcRequest": _rpc_message()},
            "schemas": schemas,
        },
    }


def _event_channels(settings: BrokerSettings) -> dict[str, Any]:
    """One channel per events exchange, with the events published to it."""
    channels: dict[str, Any] = {}
    for kind, channel in CHANNELS.items():
        exchange = topology.exchange_name(settings, kind)
        channels[channel] = {
            "address": exchange,
            "description": f"topic exchange `{exchange}`; routing key = event type",
            "messages": {
                event.__name__: {"$ref": f"#/components/messages/{event.__name__}"}
                for event in ALL_EVENTS
                if event.exchange == kind
            },
            "bindings": {"amqp": _exchange_binding(exchange, "topic", settings)},
        }
    return channels


def _rpc_channels(settings: BrokerSettings) -> dict[str, Any]:
    """One channel per RPC route: its queue, its callers and its request message."""
    channels: dict[str, Any] = {}
    for route in topology.ALL_ROUTES:
        channels[_rpc_channel(route)] = {
            "address": route.queue_name,
            "description": f"RPC requests for `{route.name}`, through the direct exchange "
            f"`{route.exchange}` (routing key `{route.name}`); the reply goes to the "
            "caller's `reply_to` queue with the request's `correlation_id`. Callers: "
            + ", ".join(route.callers)
            + " (the server refuses others, by the request's AMQP `user_id`).",
            "messages": {
                _request_name(route): {"$ref": f"#/components/messages/{_request_name(route)}"}
            },
            "bindings": {"amqp": _queue_binding(route.queue_name, durable=True, settings=settings)},
        }
    return channels


def _message(event: type[Event]) -> dict[str, Any]:
    message = {
        "name": event.type,
        "title": event.__name__,
        "summary": (event.__doc__ or event.type).strip().splitlines()[0],
        "contentType": "application/json",
        "headers": CLOUDEVENTS_HEADERS,
        "payload": {"$ref": SCHEMA_REF.format(model=event.__name__)},
        "bindings": {"amqp": {"messageType": event.type, "bindingVersion": "0.3.0"}},
    }
    if not event.published_by:
        # Kept for documents recorded before (its docstring says what replaced it).
        message["description"] = " ".join((event.__doc__ or "").split())
    return message


def _request_name(route: topology.RpcRoute[Any, Any]) -> str:
    """The message a route's channel carries: its typed request, else the generic one."""
    model = REQUESTS.get(route.name)
    return model.__name__ if model is not None else "RpcRequest"


def _request_message(route: str, model: type[BaseModel]) -> dict[str, Any]:
    return {
        "name": f"{route} request",
        "title": model.__name__,
        "summary": (model.__doc__ or route).strip().splitlines()[0],
        "description": (model.__doc__ or "").strip(),
        "contentType": "application/json",
        "payload": {"$ref": SCHEMA_REF.format(model=model.__name__)},
        "bindings": {"amqp": {"messageType": "rpc-request", "bindingVersion": "0.3.0"}},
    }


def _rpc_message() -> dict[str, Any]:
    return {
        "name": "rpc-request",
        "title": "RPC request",
        "summary": "A JSON `meta` body, or binary payload with `meta` in the x-rpc-meta header",
        "payload": {"type": "object"},
        "bindings": {"amqp": {"messageType": "rpc-request", "bindingVersion": "0.3.0"}},
    }


WATCHES: tuple[tuple[str, tuple[tuple[ExchangeKind, str], ...], str], ...] = (
    *(
        (service, topology.CANCEL_REQUESTS, "to stop the cancelled jobs it holds")
        for service in topology.CANCEL_WATCHERS
    ),
    ("upload", topology.EVERY_EVENT, "for progress streams and its view of live jobs"),
)
"""Who follows events on live queues of their own (`topology.declare_live_queue`), and why."""


def _operations() -> dict[str, Any]:
    return _publish_operations() | _consume_operations() | _watch_operations() | _serve_operations()


def _publish_operations() -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for event in ALL_EVENTS:
        channel = CHANNELS[event.exchange]
        for service in event.published_by:
            operations[f"{service}.publish.{event.__name__}"] = {
                "action": "send",
                "title": f"{service} publishes {event.type}",
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{event.__name__}"}],
            }
    return operations


def _consume_operations() -> dict[str, Any]:
    """Each work queue's consumer, once per exchange it binds (every binding's events)."""
    operations: dict[str, Any] = {}
    for spec in topology.ALL_QUEUES:
        service = spec.name.split(".", 1)[0]
        for kind, keys in _keys_by_exchange(spec.bindings).items():
            operations[f"{service}.consume.{kind}"] = {
                "action": "receive",
                "title": f"{service} consumes `{spec.name}` ({kind}: {_listed(keys)})",
                "description": f"quorum queue, delivery limit {spec.delivery_limit}; retries "
                f"through `{spec.name}.delay.<s>s`, parking in `{spec.parking_name}`",
                **_receiving(kind, keys),
            }
    return operations


def _watch_operations() -> dict[str, Any]:
    """Who follows events live: each process on a queue of its own, so that every replica
    hears every event bound (not work shared between replicas)."""
    limits = topology.LIVE_QUEUE_ARGUMENTS
    operations: dict[str, Any] = {}
    for service, bindings, why in WATCHES:
        for kind, keys in _keys_by_exchange(bindings).items():
            operations[f"{service}.watch.{kind}"] = {
                "action": "receive",
                "title": f"{service} follows {kind} ({_listed(keys)}) live, {why}",
                "description": "a classic queue of each process's own, exclusive and deleted "
                f"with its connection; events kept {limits['x-message-ttl'] // 1000} s, at "
                f"most {limits['x-max-length']} (the oldest dropped)",
                **_receiving(kind, keys),
            }
    return operations


def _serve_operations() -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for route in topology.ALL_ROUTES:
        channel = _rpc_channel(route)
        operations[f"{route.name.split('.', 1)[0]}.serve.{route.name}"] = {
            "action": "receive",
            "title": f"serves {route.name}",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{_request_name(route)}"}],
        }
    return operations


def _keys_by_exchange(
    bindings: tuple[tuple[ExchangeKind, str], ...],
) -> dict[ExchangeKind, list[str]]:
    keys: dict[ExchangeKind, list[str]] = {}
    for kind, routing_key in bindings:
        keys.setdefault(kind, []).append(routing_key)
    return keys


def _listed(keys: list[str]) -> str:
    return ", ".join(f"`{key}`" for key in keys)


def _receiving(kind: ExchangeKind, keys: list[str]) -> dict[str, Any]:
    """The channel of exchange `kind` and the events the routing `keys` bring from it."""
    channel = CHANNELS[kind]
    return {
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [
            {"$ref": f"#/channels/{channel}/messages/{event.__name__}"}
            for event in ALL_EVENTS
            if event.exchange == kind and any(_matches(key, event.type) for key in keys)
        ],
    }


def _rpc_channel(route: topology.RpcRoute[Any, Any]) -> str:
    return f"rpc-{route.name.replace('.', '-')}"


def _matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching, for the patterns the topology uses (`#`, exact keys)."""
    return pattern == "#" or pattern == routing_key


def _exchange_binding(name: str, kind: str, settings: BrokerSettings) -> dict[str, Any]:
    return {
        "is": "routingKey",
        "exchange": {
            "name": name,
            "type": kind,
            "durable": True,
            "autoDelete": False,
            "vhost": settings.rabbitmq_vhost,
        },
        "bindingVersion": "0.3.0",
    }


def _queue_binding(name: str, *, durable: bool, settings: BrokerSettings) -> dict[str, Any]:
    return {
        "is": "queue",
        "queue": {
            "name": name,
            "durable": durable,
            "exclusive": False,
            "autoDelete": False,
            "vhost": settings.rabbitmq_vhost,
        },
        "bindingVersion": "0.3.0",
    }


def main() -> int:
    from importlib.metadata import version

    settings = BrokerSettings.model_validate({"rabbitmq_password": "unused"})
    document = asyncapi_document(settings, version=version("imagemesh-messaging"))
    json.dump(document, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
