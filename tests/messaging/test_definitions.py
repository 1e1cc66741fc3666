"""messaging.definitions: the broker's definitions file, derived from the code.

The unit tests check the generator and the users it renders; the integration tests load
what it makes into the real RabbitMQ and compare it with what the code really declares."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import stat
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import stack
from pydantic import SecretStr

from messaging import BrokerSettings, topology
from messaging.constants import SERVICES
from messaging.definitions import (
    DefinitionsError,
    UsersSettings,
    definitions,
    dump,
    main,
    password_hash,
    render,
    with_users,
)
from messaging.permissions import grants

PASSWORDS = {f"rabbitmq_{service}_password": f"{service}-pw" for service in SERVICES}


def users_settings(**overrides: Any) -> UsersSettings:
    return UsersSettings.model_validate({"rabbitmq_password": "admin-pw", **PASSWORDS, **overrides})


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


# --- the topology ---------------------------------------------------------------------


def test_every_work_queue_has_its_arguments_delay_queues_and_parking_lot() -> None:
    settings = users_settings(amqp_retry_delays="2,10")
    queues = by_name(definitions(settings)["queues"])
    bindings = {
        (b["source"], b["destination"], b["routing_key"]) for b in definitions(settings)["bindings"]
    }
    for spec in topology.ALL_QUEUES:
        assert queues[spec.name]["arguments"] == spec.arguments()
        assert queues[spec.name]["durable"] is True
        assert queues[spec.parking_name]["arguments"] == {"x-queue-type": "quorum"}
        assert (topology.DEAD_LETTER_EXCHANGE, spec.parking_name, spec.name) in bindings
        assert (topology.RETRY_EXCHANGE, spec.name, spec.name) in bindings
        for seconds in (2, 10):
            delay = queues[spec.delay_name(seconds)]
            assert delay["arguments"]["x-message-ttl"] == seconds * 1000
            assert delay["arguments"]["x-dead-letter-routing-key"] == spec.name
            assert (topology.DELAY_EXCHANGE, delay["name"], delay["name"]) in bindings
        for kind, key in spec.bindings:
            assert (topology.exchange_name(settings, kind), spec.name, key) in bindings
    delays = [name for name in queues if ".delay." in name]
    assert len(delays) == 2 * len(topology.ALL_QUEUES), "one per tier, from the settings"


def test_rpc_queues_and_exchanges() -> None:
    settings = users_settings(amqp_exchange_events="ev", rabbitmq_vhost="v")
    data = definitions(settings)
    assert data["vhosts"] == [{"name": "v"}]
    exchanges = {e["name"]: e["type"] for e in data["exchanges"]}
    assert exchanges == {name: kind.value for name, kind in topology.exchanges(settings).items()}
    assert exchanges["ev"] == "topic"
    queues = by_name(data["queues"])
    for route in topology.ALL_ROUTES:
        assert queues[route.queue_name]["arguments"] == {"x-queue-type": "classic"}
        assert route.parking_name in queues
    # Per-process queues (replies, live views) die with their connection: not definitions.
    assert not [name for name in queues if name.startswith(("rpc-reply.", "live."))]
    assert {item["vhost"] for item in data["queues"] + data["exchanges"]} == {"v"}
    assert data["users"] == data["permissions"] == data["policies"] == []


def test_main_prints_the_definitions_for_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RABBITMQ_VHOST", "elsewhere")
    assert main([]) == 0
    printed = capsys.readouterr().out
    expected = BrokerSettings.model_validate(
        {"rabbitmq_password": "x", "rabbitmq_vhost": "elsewhere"}
    )
    assert printed == dump(definitions(expected))


# --- users ------------------------------------------------------------------------------


def check_hash(stored: str, password: str) -> bool:
    raw = base64.b64decode(stored)
    salt, digest = raw[:4], raw[4:]
    return len(digest) == 32 and hashlib.sha256(salt + password.encode()).digest() == digest


def test_password_hash_is_rabbitmqs_salted_sha256() -> None:
    assert check_hash(password_hash("secret"), "secret")
    assert not check_hash(password_hash("secret"), "other")
    assert password_hash("secret") != password_hash("secret"), "a new salt each time"
    salt = bytes.fromhex("908dc60a")
    expected = base64.b64encode(salt + hashlib.sha256(salt + b"test12").digest()).decode()
    assert password_hash("test12", salt) == expected


def test_users_are_the_administrator_and_each_service_with_exactly_its_grants() -> None:
    settings = users_settings(rabbitmq_user="root", rabbitmq_service_user_prefix="t-")
    data = with_users(definitions(settings), settings)
    users = by_name(data["users"])
    assert set(users) == {"root", *(f"t-{service}" for service in SERVICES)}
    assert users["root"]["tags"] == "administrator"
    assert check_hash(users["root"]["password_hash"], "admin-pw")
    for service in SERVICES:
        user = users[f"t-{service}"]
        assert user["tags"] == ""
        assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        assert check_hash(user["password_hash"], f"{service}-pw")
    permissions = {p["user"]: p for p in data["permissions"]}
    assert permissions["root"]["configure"] == ".*"
    for service, grant in grants(settings).items():
        given = permissions[f"t-{service}"]
        assert (given["configure"], given["write"], given["read"]) == (
            grant.configure,
            grant.write,
            grant.read,
        )
        topics = {
            t["exchange"]: t["write"]
            for t in data["topic_permissions"]
            if t["user"] == f"t-{service}"
        }
        assert topics == grant.topics
    assert "admin-pw" not in json.dumps(data)


def test_render_adds_users_to_the_committed_topology(tmp_path: Path) -> None:
    settings = users_settings()
    committed = tmp_path / "definitions.json"
    committed.write_text(dump(definitions(settings)))
    output = tmp_path / "out" / "definitions.json"
    output.parent.mkdir()
    render(committed, output, settings)
    rendered = json.loads(output.read_text())
    assert stat.S_IMODE(output.stat().st_mode) == 0o644
    assert {key: rendered[key] for key in ("exchanges", "queues", "bindings")} == {
        key: json.loads(committed.read_text())[key] for key in ("exchanges", "queues", "bindings")
    }
    assert len(rendered["users"]) == 1 + len(SERVICES)
    assert list(output.parent.iterdir()) == [output], "no temporary file left"


def test_render_refuses_a_topology_for_other_settings(tmp_path: Path) -> None:
    committed = tmp_path / "definitions.json"
    committed.write_text(dump(definitions(users_settings())))
    output = tmp_path / "rendered.json"
    with pytest.raises(DefinitionsError, match="regenerate"):
        render(committed, output, users_settings(amqp_retry_delays="1,2"))
    assert not output.exists()


def test_main_render_names_a_missing_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RABBITMQ_PASSWORD", "x")
    for service in SERVICES:
        monkeypatch.delenv(f"RABBITMQ_{service.upper()}_PASSWORD", raising=False)
    assert main(["render", str(tmp_path / "in"), str(tmp_path / "out")]) == 2
    assert "RABBITMQ_UPLOAD_PASSWORD" in capsys.readouterr().err


# --- against the real broker ----------------------------------------------------------


def api(env: dict[str, str], method: str, path: str, body: Any = None) -> Any:
    port = env.get("RABBITMQ_MANAGEMENT_PORT", "15672")
    request = urllib.request.Request(
        f"http://{env['RABBITMQ_HOST']}:{port}/api{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
    )
    token = base64.b64encode(f"{env['RABBITMQ_USER']}:{env['RABBITMQ_PASSWORD']}".encode())
    request.add_header("Authorization", f"Basic {token.decode()}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def comparable(data: dict[str, Any]) -> dict[str, list[str]]:
    """Exchanges, queues and bindings as sorted JSON lines, without the vhost (a vhost's
    export leaves it out) or the keys an export adds, and without the built-in exchanges."""
    keys = {
        "exchanges": ("name", "type", "durable", "auto_delete", "internal", "arguments"),
        "queues": ("name", "durable", "auto_delete", "arguments"),
        "bindings": ("source", "destination", "destination_type", "routing_key", "arguments"),
    }
    result = {}
    for kind, wanted in keys.items():
        items = [
            json.dumps({key: item[key] for key in wanted}, sort_keys=True)
            for item in data[kind]
            if not str(item.get("name", "")).startswith("amq.")
        ]
        result[kind] = sorted(items)
    return result


@contextlib.contextmanager
def fresh_vhost(env: dict[str, str]) -> Iterator[str]:
    vhost = f"imagemesh-defs-{uuid.uuid4().hex[:8]}"
    stack.provision_rabbitmq(stack.Config.of(env), vhost=vhost)
    try:
        yield vhost
    finally:
        with contextlib.suppress(Exception):
            api(env, "DELETE", f"/vhosts/{vhost}")


async def declare_as_the_services_do(url: str, settings: BrokerSettings) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await topology.declare_exchanges(channel, settings)
        for spec in topology.ALL_QUEUES:
            await topology.declare_work_queue(channel, settings, spec)
        for route in topology.ALL_ROUTES:
            await topology.declare_rpc_queue(channel, route)


@pytest.mark.integration
async def test_the_generated_definitions_are_what_the_code_declares_on_a_real_broker(
    stack_config: dict[str, str],
) -> None:
    with fresh_vhost(stack_config) as vhost:
        settings = BrokerSettings.model_validate(
            {**{k.lower(): v for k, v in stack_config.items()}, "rabbitmq_vhost": vhost}
        )
        await declare_as_the_services_do(settings.amqp_url(), settings)
        exported = api(stack_config, "GET", f"/definitions/{vhost}")
        assert comparable(exported) == comparable(definitions(settings))


@pytest.mark.integration
async def test_a_broker_loaded_with_the_rendered_definitions_serves_the_services(
    stack_config: dict[str, str],
) -> None:
    """Import what rabbitmq-definitions renders (users included, under names of this
    test's own), then: each service user logs in with its password, and the code's own
    declarations agree with the imported queues (a different argument would fail them)."""
    suffix = uuid.uuid4().hex[:8]
    vhost = f"imagemesh-defs-{suffix}"
    config = {k.lower(): v for k, v in stack_config.items()}
    settings = UsersSettings.model_validate(
        {
            **config,
            **PASSWORDS,
            "rabbitmq_vhost": vhost,
            "rabbitmq_user": f"defs-{suffix}-admin",
            "rabbitmq_password": "admin-pw",
            "rabbitmq_service_user_prefix": f"defs-{suffix}-",
        }
    )
    rendered = with_users(definitions(settings), settings)
    names = [user["name"] for user in rendered["users"]]
    try:
        api(stack_config, "POST", "/definitions", rendered)
        exported = api(stack_config, "GET", f"/definitions/{vhost}")
        assert comparable(exported) == comparable(rendered)
        await declare_as_the_services_do(settings.amqp_url(), settings)
        for service in SERVICES:
            user, password = settings.service_user(service)
            as_service = settings.model_copy(
                update={"rabbitmq_user": user, "rabbitmq_password": SecretStr(password)}
            )
            connection = await aio_pika.connect(as_service.amqp_url())
            async with connection:
                channel = await connection.channel()
                await topology.declare_exchanges(channel, as_service, passive=True)
                for spec in topology.ALL_QUEUES:
                    if spec.name.startswith(f"{service}."):
                        await topology.declare_work_queue(channel, as_service, spec)
                for route in topology.ALL_ROUTES:
                    if route.name.startswith(f"{service}."):
                        await topology.declare_rpc_queue(channel, route)
    finally:
        with contextlib.suppress(Exception):
            api(stack_config, "DELETE", f"/vhosts/{vhost}")
        for name in names:
            with contextlib.suppress(Exception):
                api(stack_config, "DELETE", f"/users/{name}")
