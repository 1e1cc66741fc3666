"""Operators' tool for the parking lots: list, inspect and re-publish parked messages.

    python -m messaging.parking list [--queue NAME]
    python -m messaging.parking show MESSAGE_ID
    python -m messaging.parking republish (MESSAGE_ID | --all) [--queue NAME]

(`make parking ARGS="..."` runs it with the local stack's settings.) A re-published message
goes back to its own queue only (through the retry exchange), with its attempt count reset:
the queue its parking lot belongs to, whatever its headers claim. It is judged there by the
broker user that first published it (kept in a header), not by the operator's. Parked RPC
requests are listed but not re-published: their callers are long gone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from pydantic import ValidationError

from . import topology
from ._broker import PARK_ERROR_HEADER, QUEUE_HEADER
from ._envelope import copy_of
from ._identity import SENDER_HEADER, Identities
from ._settings import BrokerSettings

_DROPPED_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
)


@dataclass(frozen=True)
class Parked:
    parking: str
    message: AbstractIncomingMessage

    @property
    def queue(self) -> str:
        """The queue the message was parked from: the one its parking lot belongs to. Not
        its `x-imagemesh-queue` header, which whoever published the message wrote."""
        return self.parking.removesuffix(".parking")

    @property
    def claimed_queue(self) -> str | None:
        """The queue its header names, when that is not its origin (forged, or moved)."""
        claimed = _text((self.message.headers or {}).get(QUEUE_HEADER))
        return claimed if claimed and claimed != self.queue else None

    def first_sender(self, identities: Identities) -> str | None:
        """The broker user that first published it. A copy the origin queue's own consumer
        parked names it in a header, believed only on such a copy (its `user_id` is that
        service's) or an operator's: anyone with write on the dead-letter exchange can put
        a message with any header into a parking lot. Otherwise its own `user_id` (what
        the broker dead-lettered, or anyone else's) is its sender."""
        consumer = f"{identities.prefix}{self.queue.split('.', 1)[0]}"
        return replace(identities, own_user=consumer).origin_user(self.message)

    @property
    def error(self) -> str:
        headers = self.message.headers or {}
        return _text(headers.get(PARK_ERROR_HEADER)) or _death_reason(headers)

    def row(self) -> str:
        return "  ".join(
            [
                self.message.message_id or "-",
                self.queue,
                self.message.type or "-",
                self.message.correlation_id or "-",
                _text((self.message.headers or {}).get("x-imagemesh-parked-at")) or "-",
                self.error[:120],
            ]
        )


def parking_queues(only: str | None = None) -> list[str]:
    names = [spec.parking_name for spec in topology.ALL_QUEUES]
    names += [route.parking_name for route in topology.ALL_ROUTES]
    if only:
        names = [name for name in names if only in (name, name.removesuffix(".parking"))]
    return names


async def take_all(connection: AbstractConnection, names: Sequence[str]) -> list[Parked]:
    """Every parked message, held unacknowledged (so none is read twice) until settled."""
    taken: list[Parked] = []
    for name in names:
        # A channel per queue: a passive declare of a queue nobody created yet closes it.
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            continue
        while (message := await queue.get(fail=False, no_ack=False)) is not None:
            taken.append(Parked(name, message))
    return taken


async def republish(channel: AbstractChannel, parked: Parked, settings: BrokerSettings) -> None:
    """Send a parked message back to its origin queue, as the operator (its AMQP
    `user_id`), naming its first sender for the consumer to judge."""
    headers = {
        key: value
        for key, value in (parked.message.headers or {}).items()
        if key not in _DROPPED_HEADERS and not key.startswith("x-imagemesh-")
    }
    sender = parked.first_sender(Identities.of(settings))
    if sender:
        headers[SENDER_HEADER] = sender
    exchange = await channel.get_exchange(topology.RETRY_EXCHANGE)
    message = parked.message
    copy = copy_of(message, headers)
    copy.user_id = settings.rabbitmq_user
    await exchange.publish(copy, routing_key=parked.queue, mandatory=True)
    await message.ack()


async def run(settings: BrokerSettings, args: argparse.Namespace) -> int:
    connection = await aio_pika.connect(settings.amqp_url())
    async with connection:
        channel = await connection.channel(on_return_raises=True)
        taken = await take_all(connection, parking_queues(args.queue))
        try:
            return await _command(settings, channel, taken, args)
        finally:
            for parked in taken:
                if not parked.message.processed:
                    await parked.message.nack(requeue=True)


async def _command(
    settings: BrokerSettings,
    channel: AbstractChannel,
    taken: list[Parked],
    args: argparse.Namespace,
) -> int:
    if args.command == "list":
        print(f"{len(taken)} parked message(s)")
        for parked in taken:
            print(parked.row())
        return 0
    chosen = [p for p in taken if args.all or p.message.message_id == args.message_id]
    if not chosen:
        print(f"no parked message {args.message_id}", file=sys.stderr)
        return 1
    if args.command == "show":
        for parked in chosen:
            _show(parked, Identities.of(settings))
        return 0
    done = 0
    for parked in chosen:
        if parked.queue.startswith("rpc."):
            print(f"skipped {parked.message.message_id}: an RPC request; its caller is gone")
            continue
        if parked.claimed_queue:
            print(
                f"note {parked.message.message_id}: its header names {parked.claimed_queue!r};"
                f" it goes back to the queue it was parked from, {parked.queue!r}"
            )
        await republish(channel, parked, settings)
        done += 1
        print(f"re-published {parked.message.message_id} to {parked.queue}")
    print(f"{done} message(s) re-published")
    return 0


def _show(parked: Parked, identities: Identities) -> None:
    message = parked.message
    print(f"message {message.message_id} in {parked.parking} (from {parked.queue})")
    print(f"first published by broker user: {parked.first_sender(identities) or '-'}")
    print(
        f"type: {message.type}  job: {message.correlation_id}  content-type: {message.content_type}"
    )
    print(f"error: {parked.error}")
    for key, value in sorted((message.headers or {}).items()):
        print(f"header {key}: {_text(value) if isinstance(value, bytes | str) else value!r}")
    body = message.body[:4000]
    try:
        print(json.dumps(json.loads(body), indent=2))
    except ValueError:
        print(f"body: {len(message.body)} bytes (not JSON)")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _death_reason(headers: dict[str, Any]) -> str:
    deaths = headers.get("x-death") or []
    return f"dead-lettered by the broker: {_text(deaths[0].get('reason'))}" if deaths else "-"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m messaging.parking", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list parked messages")
    show = commands.add_parser("show", help="one parked message, with headers and body")
    show.add_argument("message_id")
    again = commands.add_parser("republish", help="send parked messages back to their queue")
    target = again.add_mutually_exclusive_group(required=True)
    target.add_argument("message_id", nargs="?")
    target.add_argument("--all", action="store_true")
    for sub in (listing, show, again):
        sub.add_argument("--queue", help="only this queue (work queue or parking-lot name)")
    show.set_defaults(all=False)
    args = parser.parse_args(argv)
    try:
        settings = BrokerSettings()
    except ValidationError as exc:
        print(f"parking: invalid configuration: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run(settings, args))


if __name__ == "__main__":
    raise SystemExit(main())
