"""Least privilege on the broker: what each service's RabbitMQ user may do, derived from the
topology and the events (who publishes what), so it cannot drift from the code.

RabbitMQ checks, per vhost: *configure* (declare, delete) on queues and exchanges, *write*
(publish to an exchange; bind a queue: write on the queue), *read* (consume a queue; bind:
read on the exchange), and, on topic exchanges, *topic write* per routing key. Nobody but
the provisioning administrator may configure an exchange; no service may publish to the
default exchange (it reaches every queue by name); each service may publish only the event
types it owns (`Event.published_by`) and read only its own queues; each RPC server may bind
queues only to its own request exchange, and each caller publish only to the exchanges of
the routes it calls.

    python -m messaging.permissions     # the grants as JSON (tools/stack provisions them)
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass
from typing import Any

from . import topology
from ._settings import BrokerSettings
from .constants import SERVICES
from .events import ALL_EVENTS, ExchangeKind


@dataclass(frozen=True, slots=True)
class Grant:
    configure: str
    write: str
    read: str
    topics: dict[str, str]
    """Topic exchange name -> the routing keys (regex) the service may publish there."""


def _any_of(names: list[str]) -> str:
    """A regex matching exactly these names (and prefixes written as `name.*`)."""
    parts = [re.escape(n[:-2]) + r"\..*" if n.endswith(".*") else re.escape(n) for n in names]
    return "^(" + "|".join(sorted(set(parts))) + ")$" if parts else "^$"


def _own_queues(service: str) -> list[str]:
    queues = [f"rpc-reply.{service}.*", f"live.{service}.*"]
    queues += [f"{spec.name}.*" for spec in topology.ALL_QUEUES if _owner(spec.name) == service]
    queues += [spec.name for spec in topology.ALL_QUEUES if _owner(spec.name) == service]
    for route in topology.ALL_ROUTES:
        if _owner(route.name) == service:
            queues += [route.queue_name, route.parking_name]
    return queues


def _owner(name: str) -> str:
    return name.split(".", 1)[0]


def _published(service: str, kind: ExchangeKind) -> list[str]:
    return [e.type for e in ALL_EVENTS if e.exchange == kind and service in e.published_by]


def grants(settings: BrokerSettings) -> dict[str, Grant]:
    events, prov = settings.amqp_exchange_events, settings.amqp_exchange_prov
    consumes = {_owner(spec.name): spec for spec in topology.ALL_QUEUES}
    serves = {route.server for route in topology.ALL_ROUTES}
    # A caller publishes to the exchange of each service it calls; a server binds its
    # request queues to its own exchange only (read on it), never to another's.
    calls: dict[str, list[str]] = {}
    for route in topology.ALL_ROUTES:
        for caller in route.callers:
            calls.setdefault(caller, []).append(route.exchange)
    result = {}
    for service in SERVICES:
        own = _own_queues(service)
        write, read = list(own), list(own)
        topics: dict[str, str] = {}
        for kind, exchange in (("events", events), ("provenance", prov)):
            published = _published(service, kind)  # type: ignore[arg-type]
            topics[exchange] = _any_of(published)
            if published:
                write.append(exchange)
        write += calls.get(service, [])
        read.append(topology.REPLY_EXCHANGE)  # its reply queue's binding
        if service in serves:
            write += [topology.REPLY_EXCHANGE, topology.DEAD_LETTER_EXCHANGE]
            read += [topology.rpc_exchange(service), topology.DEAD_LETTER_EXCHANGE]
        if service in consumes:
            spec = consumes[service]
            # Declaring a queue with a dead-letter exchange needs write on that exchange:
            # work queues dead-letter to parking, delay queues to the retry exchange.
            write += [topology.DELAY_EXCHANGE, topology.DEAD_LETTER_EXCHANGE]
            write += [topology.RETRY_EXCHANGE]
            read += [topology.DELAY_EXCHANGE, topology.RETRY_EXCHANGE]
            read += [topology.DEAD_LETTER_EXCHANGE]
            read += [events if kind == "events" else prov for kind, _ in spec.bindings]
        if service == "upload":
            read += [events, prov]  # the live progress queue's bindings
        if service in topology.CANCEL_WATCHERS:
            read.append(events)  # its live queue's binding to job.cancel-requested
        result[service] = Grant(_any_of(own), _any_of(write), _any_of(read), topics)
    return result


def provisioning(settings: BrokerSettings) -> dict[str, Any]:
    """What an administrator provisions: the exchanges (type by name) and the grants."""
    return {
        "exchanges": {name: kind.value for name, kind in topology.exchanges(settings).items()},
        "grants": {name: asdict(grant) for name, grant in grants(settings).items()},
    }


def main() -> int:
    """Print `provisioning` for the settings in the environment (exchange names)."""
    settings = BrokerSettings.model_validate({"rabbitmq_password": "unused"})
    json.dump(provisioning(settings), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
