"""The broker's definitions file (RabbitMQ's JSON for `load_definitions`), derived from the
code so that it cannot drift from it.

The topology part (the vhost, exchanges, queues with their arguments, bindings) is what
`topology`'s own declare functions declare, recorded rather than restated: they run
against a stand-in channel. It holds no secret and is committed as
`deploy/rabbitmq/definitions.json`. Policies: none. Every queue property the mesh relies
on is a queue argument the services declare (and RabbitMQ checks on every redeclare); a
policy would be a second source of truth that arguments override anyway.

Users cannot be committed (their passwords come from the environment), and a node that
imports definitions at boot creates no default user: `render` adds the administrator and
each service's user (salted SHA-256 hashes of the environment's passwords) with exactly
their grants (`permissions`), so the broker boots fully provisioned.

    python -m messaging.definitions > deploy/rabbitmq/definitions.json   # regenerate
    python -m messaging.definitions render TOPOLOGY OUT                   # + users, for boot
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from aio_pika.abc import AbstractChannel
from pydantic import SecretStr, ValidationError

from servicekit import production_refusals

from . import topology
from ._settings import BrokerSettings
from .permissions import grants

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"


class UsersSettings(BrokerSettings):
    """The administrator (RABBITMQ_USER/RABBITMQ_PASSWORD) and each service's password; a
    service's user is named after it (with an optional prefix, for tests)."""

    imagemesh_env: Literal["development", "production"] = "development"
    """`production`: refuse a development secret from `.env.example` (servicekit), as the
    services do: these passwords become the broker's users."""
    rabbitmq_upload_password: SecretStr
    rabbitmq_imageproc_runner_password: SecretStr
    rabbitmq_imageproc_password: SecretStr
    rabbitmq_provenancedb_password: SecretStr

    def service_user(self, service: str) -> tuple[str, str]:
        password: SecretStr = getattr(self, f"rabbitmq_{service}_password")
        return f"{self.rabbitmq_service_user_prefix}{service}", password.get_secret_value()


U = TypeVar("U", bound=UsersSettings)


# --- the topology, as the code declares it ----------------------------------------------


class _Queue:
    def __init__(self, recorder: _Recorder, name: str) -> None:
        self._recorder = recorder
        self.name = name

    async def bind(self, exchange: str, routing_key: str) -> None:
        self._recorder.bind(exchange, self.name, routing_key)


class _Recorder:
    """Stands in for an aio-pika channel: keeps what is declared, as definitions."""

    def __init__(self, vhost: str) -> None:
        self.vhost = vhost
        self.exchanges: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.bindings: list[dict[str, Any]] = []

    async def declare_exchange(
        self, name: str, type: Any, *, durable: bool, passive: bool = False
    ) -> str:
        self.exchanges[name] = {
            "name": name,
            "vhost": self.vhost,
            "type": type.value,
            "durable": durable,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }
        return name

    async def declare_queue(
        self, name: str, *, durable: bool, arguments: dict[str, Any] | None = None
    ) -> _Queue:
        self.queues[name] = {
            "name": name,
            "vhost": self.vhost,
            "durable": durable,
            "auto_delete": False,
            "arguments": dict(arguments or {}),
        }
        return _Queue(self, name)

    def bind(self, exchange: str, queue: str, routing_key: str) -> None:
        self.bindings.append(
            {
                "source": exchange,
                "vhost": self.vhost,
                "destination": queue,
                "destination_type": "queue",
                "routing_key": routing_key,
                "arguments": {},
            }
        )


async def _record(settings: BrokerSettings) -> _Recorder:
    recorder = _Recorder(settings.rabbitmq_vhost)
    channel = cast(AbstractChannel, recorder)  # only the calls topology makes
    await topology.declare_exchanges(channel, settings)
    for spec in topology.ALL_QUEUES:
        await topology.declare_work_queue(channel, settings, spec)
    for route in topology.ALL_ROUTES:
        await topology.declare_rpc_queue(channel, route)
    return recorder


def _complete(coroutine: Coroutine[Any, Any, _Recorder]) -> _Recorder:
    """Run `coroutine` to its end in one step, without an event loop (so that callers may
    have one running): the recorder answers every call at once, nothing ever waits."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: _Recorder = done.value
        return result
    coroutine.close()
    raise RuntimeError("a declaration waited for something other than the recorder")


def definitions(settings: BrokerSettings) -> dict[str, Any]:
    """The vhost and everything durable the services declare in it, sorted by name. Not
    the per-process queues (RPC replies, live views): exclusive, they die with their
    connection."""
    recorded = _complete(_record(settings))
    return {
        "vhosts": [{"name": settings.rabbitmq_vhost}],
        "users": [],
        "permissions": [],
        "topic_permissions": [],
        "parameters": [],
        "policies": [],
        "exchanges": [recorded.exchanges[name] for name in sorted(recorded.exchanges)],
        "queues": [recorded.queues[name] for name in sorted(recorded.queues)],
        "bindings": sorted(
            recorded.bindings, key=lambda b: (b["source"], b["destination"], b["routing_key"])
        ),
    }


# --- users, for the file a node imports at boot -----------------------------------------


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password))
    with a 4-byte random salt."""
    salt = secrets.token_bytes(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def _user(name: str, password: str, tags: str) -> dict[str, Any]:
    return {
        "name": name,
        "password_hash": password_hash(password),
        "hashing_algorithm": HASHING_ALGORITHM,
        "tags": tags,
        "limits": {},
    }


def with_users(topology_definitions: dict[str, Any], settings: UsersSettings) -> dict[str, Any]:
    """`topology_definitions` plus the administrator (all rights on the vhost) and each
    service's user with exactly its grants."""
    vhost = settings.rabbitmq_vhost
    admin = settings.rabbitmq_user
    users = [_user(admin, settings.rabbitmq_password.get_secret_value(), "administrator")]
    permissions = [{"user": admin, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}]
    topic_permissions = []
    for service, grant in grants(settings).items():
        name, password = settings.service_user(service)
        users.append(_user(name, password, ""))
        permissions.append(
            {
                "user": name,
                "vhost": vhost,
                "configure": grant.configure,
                "write": grant.write,
                "read": grant.read,
            }
        )
        topic_permissions += [
            {"user": name, "vhost": vhost, "exchange": exchange, "write": write, "read": ".*"}
            for exchange, write in grant.topics.items()
        ]
    return {
        **topology_definitions,
        "users": users,
        "permissions": permissions,
        "topic_permissions": topic_permissions,
    }


def from_environment(cls: type[U], tool: str) -> U | None:
    """`cls` read from the environment; None after saying on stderr what is wrong with it
    (a variable missing or invalid, or in production a development secret: refused before
    any of these passwords becomes a user's, or a hash of one is written)."""
    try:
        settings = cls()
    except ValidationError as exc:
        names = ", ".join(".".join(map(str, e["loc"])).upper() for e in exc.errors())
        print(f"{tool}: invalid configuration: {names}", file=sys.stderr)
        return None
    if refused := production_refusals(settings):
        print(f"{tool}: invalid configuration: {'; '.join(refused)}", file=sys.stderr)
        return None
    return settings


class DefinitionsError(RuntimeError):
    pass


def render(topology_file: Path, output: Path, settings: UsersSettings) -> None:
    """Write `topology_file` plus the users to `output` (readable by the broker only
    through the volume it shares with this job). Refuses a topology file that is not the
    code's for these settings (exchange names, vhost, retry delays): the services would
    then declare queues the broker already holds with other arguments."""
    committed = json.loads(topology_file.read_text())
    expected = definitions(settings)
    if committed != expected:
        raise DefinitionsError(
            f"{topology_file} is not the topology for these settings (RABBITMQ_VHOST, "
            "AMQP_EXCHANGE_*, AMQP_RETRY_DELAYS): regenerate it with "
            "`python -m messaging.definitions`"
        )
    text = dump(with_users(committed, settings))
    # Atomically, so that a broker never boots from half a file.
    fd, temporary = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    with os.fdopen(fd, "w") as stream:
        stream.write(text)
    os.chmod(temporary, 0o644)  # the broker runs as another user
    os.replace(temporary, output)


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        # Names from the environment (defaults otherwise); no password is needed.
        settings = BrokerSettings.model_validate({"rabbitmq_password": "unused"})
        sys.stdout.write(dump(definitions(settings)))
        return 0
    if len(args) != 3 or args[0] != "render":
        print("usage: python -m messaging.definitions [render TOPOLOGY OUT]", file=sys.stderr)
        return 2
    users = from_environment(UsersSettings, "messaging.definitions")
    if users is None:
        return 2
    try:
        render(Path(args[1]), Path(args[2]), users)
    except (DefinitionsError, OSError, ValueError) as exc:
        print(f"messaging.definitions: {exc}", file=sys.stderr)
        return 1
    print(f"messaging.definitions: wrote {args[2]} for vhost {users.rabbitmq_vhost!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
