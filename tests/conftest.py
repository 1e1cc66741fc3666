"""Test set-up on the real servers.

The infrastructure (RabbitMQ, PouchDB Server, moto S3) is the local stack's, started if
it is not running. Each test session gets its own vhost, database and buckets, so tests
neither see nor disturb a mesh started with `make up`, nor an earlier test run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

if TYPE_CHECKING:
    from playwright.async_api import Browser

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import stack  # noqa: E402

from messaging import Broker, BrokerSettings  # noqa: E402
from objectstore import open_store as open_objects  # noqa: E402
from provenancedb.audit import Gap, Report, audit, job_gaps  # noqa: E402
from provenancedb.settings import AuditSettings  # noqa: E402
from provenancedb.store import open_store as open_provenance  # noqa: E402
from tests.waiting import wait_for  # noqa: E402

SERVICES = {
    "provenancedb": "PROVENANCEDB_OPS_PORT",
    "imageproc": "IMAGEPROC_OPS_PORT",
    "imageproc_runner": "RUNNER_OPS_PORT",
    "upload": "UPLOAD_PORT",
}


# Every fixture that reaches RabbitMQ, PouchDB Server or moto depends on this one.
SERVER_FIXTURE = "stack_config"
# `make check` sets it: a test that would start or contact the stack fails instead.
NO_SERVERS = "IMAGEMESH_TESTS_NO_SERVERS"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests using the servers (through any fixture) get `needs_servers`, so `make check`
    can deselect them by use rather than by a list that goes stale; tests marked `last` run
    after all others (in their collected order)."""
    for item in items:
        if SERVER_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.needs_servers)
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(scope="session")
def stack_config() -> dict[str, str]:
    """The local stack's settings, its servers started if they are not running."""
    if os.environ.get(NO_SERVERS):
        pytest.fail(f"{NO_SERVERS} is set (make check) but this test needs the servers")
    config = stack.load_config()
    stack.ensure_infra(config)
    return dict(config.values)


@contextlib.contextmanager
def isolated_env(stack_config: dict[str, str], kind: str) -> Iterator[dict[str, str]]:
    """A vhost, a database and two buckets of their own on the shared servers, removed
    afterwards, so tests neither see nor disturb a mesh started with `make up`."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        **stack_config,
        "RABBITMQ_VHOST": f"imagemesh-{kind}-{suffix}",
        "COUCHDB_DB": f"provenance-{kind}-{suffix}",
        "S3_INPUT_BUCKET": f"imagemesh-{kind}-{suffix}-input",
        "S3_OUTPUT_BUCKET": f"imagemesh-{kind}-{suffix}-output",
        "LOG_FORMAT": "json",
    }
    buckets = [env["S3_INPUT_BUCKET"], env["S3_OUTPUT_BUCKET"]]
    stack.provision_rabbitmq(stack.Config.of(env), vhost=env["RABBITMQ_VHOST"])
    stack.provision_couchdb(stack.Config.of(env), db=env["COUCHDB_DB"])
    stack.provision_s3(stack.Config.of(env), buckets=buckets)
    try:
        yield env
    finally:
        with contextlib.suppress(Exception):
            management(env, "DELETE", f"/api/vhosts/{env['RABBITMQ_VHOST']}")
        with contextlib.suppress(Exception):
            couch(env, "DELETE", f"/{env['COUCHDB_DB']}")
        with contextlib.suppress(Exception):
            _delete_buckets(env, buckets)


def _delete_buckets(env: dict[str, str], buckets: list[str]) -> None:
    """moto keeps everything in memory: give it back."""
    client = stack.s3_client(stack.Config.of(env))
    for bucket in buckets:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="session")
def test_env(stack_config: dict[str, str]) -> Iterator[dict[str, str]]:
    with isolated_env(stack_config, "test") as env:
        yield env


def settings_from(env: dict[str, str], cls: type[Any]) -> Any:
    return cls.model_validate({key.lower(): value for key, value in env.items()})


@pytest.fixture(scope="session")
def broker_settings(test_env: dict[str, str]) -> BrokerSettings:
    settings: BrokerSettings = settings_from(test_env, BrokerSettings)
    return settings


@pytest.fixture
async def broker(broker_settings: BrokerSettings) -> AsyncIterator[Broker]:
    async with Broker(broker_settings, service="tests") as connected:
        yield connected


def _request(url: str, method: str, auth: tuple[str, str], body: bytes | None = None) -> Any:
    import base64
    import json

    request = urllib.request.Request(url, method=method, data=body)
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Accept", "application/json")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def management(env: dict[str, str], method: str, path: str) -> Any:
    """Call the RabbitMQ management HTTP API (what an operator's console shows)."""
    port = env.get("RABBITMQ_MANAGEMENT_PORT", "15672")
    url = f"http://{env['RABBITMQ_HOST']}:{port}{path}"
    return _request(url, method, (env["RABBITMQ_USER"], env["RABBITMQ_PASSWORD"]))


def couch(
    env: dict[str, str],
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    login: tuple[str, str] | None = None,
) -> Any:
    """Call CouchDB as the server admin (provisioning, clean-up), or as `login`."""
    url = env["COUCHDB_URL"].rstrip("/") + path
    admin = (env["COUCHDB_ADMIN_USER"], env["COUCHDB_ADMIN_PASSWORD"])
    return _request(url, method, login or admin, body)


def auditor(env: Mapping[str, str]) -> tuple[str, str]:
    """The read-only CouchDB user (role `auditor`) of the local stack."""
    return env["COUCHDB_AUDITOR_USER"], env["COUCHDB_AUDITOR_PASSWORD"]


def job_documents(env: Mapping[str, str], job_id: str) -> list[dict[str, Any]]:
    """A job's provenance documents in time order, as an auditor reads them in Fauxton:
    the `by_job` view, keys from [job_id] to [job_id, {}]."""
    query = urllib.parse.urlencode(
        {
            "include_docs": "true",
            "startkey": json.dumps([job_id]),
            "endkey": json.dumps([job_id, {}]),
        }
    )
    result = couch(
        dict(env),
        "GET",
        f"/{env['COUCHDB_DB']}/_design/provenance/_view/by_job?{query}",
        login=auditor(env),
    )
    return [row["doc"] for row in result["rows"] if row.get("doc")]


def all_documents(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every provenance document with a job, through the `by_job` view."""
    path = f"/{env['COUCHDB_DB']}/_design/provenance/_view/by_job?include_docs=true"
    result = couch(dict(env), "GET", path, login=auditor(env))
    return [row["doc"] for row in result["rows"] if row.get("doc")]


def trail(env: Mapping[str, str], job_id: str) -> tuple[str, list[Gap], list[dict[str, Any]]]:
    """(status, gaps, documents) of a job's provenance trail, by the completeness check's
    own rules (`provenancedb.audit.job_gaps`); an unfinished job is never a gap here."""
    docs = job_documents(env, job_id)
    status, gaps = job_gaps(job_id, docs, now=datetime.now(UTC), grace=float("inf"))
    return status, gaps, docs


def complete_trail(env: Mapping[str, str], job_id: str) -> list[dict[str, Any]] | None:
    """The job's documents once it is finished and its trail has no gap, else None."""
    status, gaps, docs = trail(env, job_id)
    return docs if status in {"succeeded", "failed", "cancelled"} and not gaps else None


async def audit_env(env: Mapping[str, str], *, grace: float = 0.0) -> Report:
    """The completeness check (`python -m provenancedb.audit`) over a test environment."""
    settings: AuditSettings = settings_from(dict(env), AuditSettings)
    async with (
        open_provenance(settings, settings.login()) as store,
        open_objects(settings) as objects,
    ):
        return await audit(store, objects, settings, grace=grace)


def queue_counts(env: dict[str, str]) -> dict[str, int]:
    """Messages (ready + unacked) per queue in the test vhost."""
    queues = management(env, "GET", f"/api/queues/{env['RABBITMQ_VHOST']}")
    return {q["name"]: q.get("messages", 0) for q in queues}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Mesh:
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def upload_url(self) -> str:
        return f"http://127.0.0.1:{self.env['UPLOAD_PORT']}"

    def ops_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.env[SERVICES[service]]}"

    def start(self, name: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", name],
            cwd=ROOT,
            env={
                **os.environ,
                # CouchDB's admin and auditor are not the services' (stack.service_env).
                **{
                    key: value
                    for key, value in self.env.items()
                    if key not in stack.COUCH_ADMIN_ONLY + stack.COUCH_AUDITOR_ONLY
                },
                **service_broker_env(self.env, name),
                "PYTHONUNBUFFERED": "1",
                "MALLOC_ARENA_MAX": "2",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        url = f"{self.ops_url(name)}/readyz"

        def ready() -> bool:
            if self.processes[name].poll() is not None:
                raise AssertionError(f"{name} exited:\n{self.log_tail(name)}")
            return stack.http_ok(url)

        try:
            wait_for(ready, timeout=timeout, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{name} not ready: {exc}\n{self.log_tail(name)}") from None

    def stop(self, name: str) -> int | None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            return None

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )


def service_broker_env(env: Mapping[str, str], service: str) -> dict[str, str]:
    """A service's own broker user, as the local stack runs it (least privilege), when the
    environment's vhost was provisioned for service users (`AMQP_DECLARE_EXCHANGES=false`)."""
    if env.get("AMQP_DECLARE_EXCHANGES", "true") != "false":
        return {}
    user, password = stack.service_rabbit_user(stack.Config.of(env), service)
    return {"RABBITMQ_USER": user, "RABBITMQ_PASSWORD": password}


@contextlib.contextmanager
def running_mesh(env: dict[str, str], logs: Path) -> Iterator[Mesh]:
    """The four services as real processes on free ports, each as its own broker user with
    only its own permissions; stopped (SIGTERM) afterwards."""
    stack.provision_service_users(stack.Config.of(env))
    env = {
        **env,
        **{variable: str(free_port()) for variable in SERVICES.values()},
        "AMQP_DECLARE_EXCHANGES": "false",
    }
    running = Mesh(env, logs)
    try:
        for name in SERVICES:
            running.start(name)
        for name in SERVICES:
            running.wait_ready(name)
        yield running
    finally:
        for name in list(running.processes):
            running.stop(name)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the mesh's public API (tests/security overrides it: no cookies)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for all the browser tests; each opens contexts of its own
    (`tests.browser.page_on`)."""
    from tests.browser import chromium  # playwright is imported by browser tests only

    async with chromium() as launched:
        yield launched


@pytest.fixture(scope="session")
def mesh(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The four services against the session's vhost."""
    with running_mesh(test_env, tmp_path_factory.mktemp("mesh-logs")) as running:
        yield running
