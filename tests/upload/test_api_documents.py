"""The OpenAPI and AsyncAPI documents: valid by their specifications, and the same as the
code (routes, models, topology, events). The running service is held to the OpenAPI
document by the contract test (tests/e2e/test_api_contract.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import pytest
import stack
from openapi_spec_validator import validate

from messaging import BrokerSettings, topology
from messaging.asyncapi import asyncapi_document
from messaging.events import ALL_EVENTS
from messaging.queries import REQUESTS
from tests.conftest import ROOT
from upload.app import create_app
from upload.openapi import doc_of, openapi_document
from upload.settings import Settings

ASYNCAPI_SCHEMA = ROOT / "tools/node_modules/@asyncapi/specs/schemas/3.0.0.json"
UNDOCUMENTED = {"/api/v1/openapi.json", "/api/v1/asyncapi.json"}
"""The documents themselves."""


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings.model_validate(
        {
            key.lower(): value
            for key, value in stack.defaults().items()
            if key.startswith(("RABBITMQ_", "S3_", "UPLOAD_"))
        }
    )


@pytest.fixture(scope="module")
def openapi(settings: Settings) -> dict[str, Any]:
    return openapi_document(create_app(settings), version="0.0.0-test")


@pytest.fixture(scope="module")
def asyncapi(settings: Settings) -> dict[str, Any]:
    return asyncapi_document(settings, version="0.0.0-test")


def test_openapi_document_is_valid_openapi_3_2(openapi: dict[str, Any]) -> None:
    validate(openapi)  # raises on any violation
    assert openapi["openapi"] == "3.2.0"


def test_the_event_stream_documents_each_event(openapi: dict[str, Any]) -> None:
    """`/events` is a stream of typed events (OpenAPI 3.2 `itemSchema`), not a binary
    string: each event (`status`, `step`) with the JSON schema of its data."""
    responses = openapi["paths"]["/api/v1/jobs/{job_id}/events"]["get"]["responses"]
    stream = responses["200"]["content"]["text/event-stream"]
    assert "schema" not in stream
    item = stream["itemSchema"]
    assert item["properties"]["event"]["enum"] == ["status", "step"]
    data = {
        branch["properties"]["event"]["const"]: branch["properties"]["data"]
        for branch in item["oneOf"]
    }
    assert data["status"]["contentMediaType"] == "application/json"
    assert data["status"]["contentSchema"] == {"$ref": "#/components/schemas/Job"}
    assert data["step"]["contentSchema"] == {"$ref": "#/components/schemas/ProgressStep"}
    components = {"components": openapi["components"]}
    step = jsonschema.Draft202012Validator({**components, **data["step"]["contentSchema"]})
    assert step.is_valid({"id": "e1", "type": "job.failed", "time": "t", "service": "s"})
    assert step.is_valid({"type": "image.processed", "time": "t", "service": "s", "new": 1})
    assert not step.is_valid({"id": "e1", "status": "queued"})
    status = jsonschema.Draft202012Validator({**components, **data["status"]["contentSchema"]})
    assert not status.is_valid({"id": "e1", "type": "job.failed", "time": "t", "service": "s"})


def test_every_api_route_is_documented_and_every_documented_route_exists(
    settings: Settings, openapi: dict[str, Any]
) -> None:
    app = create_app(settings)
    served: set[tuple[str, str]] = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith("/api/v1/") and route.method != "HEAD" and path not in UNDOCUMENTED:
            assert doc_of(route.handler) is not None, f"{route.method} {path} is undocumented"
            served.add((path, route.method.lower()))
    documented = {(path, method) for path, ops in openapi["paths"].items() for method in ops}
    assert documented == served
    assert ("/api/v1/jobs/{job_id}/events", "get") in documented


def test_openapi_schemas_are_the_api_models(openapi: dict[str, Any]) -> None:
    job = openapi["components"]["schemas"]["Job"]
    assert set(job["properties"]["status"]["enum"]) == {
        "queued",
        "processing",
        "succeeded",
        "failed",
        "cancelled",
    }
    accepted = openapi["paths"]["/api/v1/jobs"]["post"]["responses"]["202"]
    assert accepted["content"]["application/json"]["schema"]["$ref"].endswith("/Accepted")
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema["$ref"].endswith("/ErrorBody"), (path, method, status)


def test_the_guards_answers_join_a_routes_own_of_the_same_status(
    openapi: dict[str, Any],
) -> None:
    """Cancel's 403 is an auditor's and a cross-site browser's; a stream's 429 is too
    many streams and too many requests; said once where the route says it already."""
    paths = openapi["paths"]

    def said(path: str, method: str, status: str) -> str:
        return str(paths[path][method]["responses"][status]["description"])

    cancel = said("/api/v1/jobs/{job_id}/cancel", "post", "403")
    assert "`forbidden`" in cancel
    assert "`csrf_failed`" in cancel
    events = said("/api/v1/jobs/{job_id}/events", "get", "429")
    assert "`too_many_streams`" in events
    assert "`rate_limited`" in events
    assert said("/api/v1/jobs", "post", "429").count("`rate_limited`") == 1
    assert said("/api/v1/jobs/{job_id}", "get", "429").startswith("too many requests")


def test_the_routes_that_send_images_say_their_refusals(openapi: dict[str, Any]) -> None:
    """A result, an input or a zip holds a download slot (429 / 503 past the caps); any
    way to a result refuses a job that did not succeed with the same 409 codes."""
    paths = openapi["paths"]
    for path in ("/jobs/{job_id}/result", "/jobs/{job_id}/input", "/results.zip"):
        responses = paths[f"/api/v1{path}"]["get"]["responses"]
        assert "`too_many_downloads`" in responses["429"]["description"], path
        assert "`rate_limited`" in responses["429"]["description"], path
        assert "`busy`" in responses["503"]["description"], path
    for path in ("/jobs/{job_id}/result", "/jobs/{job_id}/thumbnail", "/results.zip"):
        refused = paths[f"/api/v1{path}"]["get"]["responses"]["409"]["description"]
        for code in ("not_finished", "job_failed", "job_cancelled"):
            assert f"`{code}`" in refused, (path, code)


def test_asyncapi_document_is_valid_by_the_official_schema(asyncapi: dict[str, Any]) -> None:
    schema = json.loads(Path(ASYNCAPI_SCHEMA).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(asyncapi)
    ]
    assert not errors, errors
    # The schema does catch mistakes: a channel without a string address is refused.
    broken = asyncapi | {"channels": {"x": {"address": 5}}}
    assert list(validator.iter_errors(broken))


def test_asyncapi_describes_every_event_queue_and_route_of_the_code(
    asyncapi: dict[str, Any], settings: BrokerSettings
) -> None:
    messages = asyncapi["components"]["messages"]
    for event in ALL_EVENTS:
        message = messages[event.__name__]
        assert message["name"] == event.type
        schema = asyncapi["components"]["schemas"][event.__name__]
        assert set(schema["properties"]) == set(event.model_fields)
        channel = "events" if event.exchange == "events" else "provenance"
        assert event.__name__ in asyncapi["channels"][channel]["messages"]
        for service in event.published_by:
            assert f"{service}.publish.{event.__name__}" in asyncapi["operations"]
        if not event.published_by:  # image.stored, operation.applied: recorded before only
            assert "No longer published" in message["description"]
            assert not [op for op in asyncapi["operations"] if op.endswith(event.__name__)]
    assert asyncapi["channels"]["events"]["address"] == settings.amqp_exchange_events
    assert asyncapi["channels"]["provenance"]["address"] == settings.amqp_exchange_prov
    titles = " ".join(op["title"] for op in asyncapi["operations"].values())
    for spec in topology.ALL_QUEUES:
        assert spec.name in titles
    for route in topology.ALL_ROUTES:
        assert any(
            channel["address"] == route.queue_name for channel in asyncapi["channels"].values()
        )


def test_asyncapi_names_every_consumer_of_every_binding_and_the_live_watchers(
    asyncapi: dict[str, Any],
) -> None:
    """A queue bound to several events receives each of them (not the last binding's
    only); a cancellation reaches every runner and imageproc on a live queue of its own."""
    operations = asyncapi["operations"]

    def received(operation: dict[str, Any]) -> set[str]:
        return {message["$ref"].rsplit("/", 1)[1] for message in operation["messages"]}

    for spec in topology.ALL_QUEUES:
        service = spec.name.split(".", 1)[0]
        for kind, routing_key in spec.bindings:
            operation = operations[f"{service}.consume.{kind}"]
            assert f"`{routing_key}`" in operation["title"]
            bound = {e.__name__ for e in ALL_EVENTS if e.exchange == kind and routing_key in
                     ("#", e.type)}  # fmt: skip
            assert bound <= received(operation)
    for service in topology.CANCEL_WATCHERS:
        watch = operations[f"{service}.watch.events"]
        assert received(watch) == {"CancelRequested"}
        assert "exclusive" in watch["description"]
    assert "JobCancelled" in received(operations["upload.watch.events"])
    fields = asyncapi["components"]["schemas"]["CancelRequested"]["properties"]
    assert fields["principal"]["description"] == "Who asked (the job's owner)."


def test_asyncapi_gives_the_typed_requests_of_provenancedbs_query_routes(
    asyncapi: dict[str, Any],
) -> None:
    route_names = {route.name for route in topology.ALL_ROUTES}
    assert set(REQUESTS) <= route_names
    for route in topology.ALL_ROUTES:
        channel = asyncapi["channels"][f"rpc-{route.name.replace('.', '-')}"]
        model = REQUESTS.get(route.name)
        if model is None:
            assert list(channel["messages"]) == ["RpcRequest"]
            continue
        assert list(channel["messages"]) == [model.__name__]
        message = asyncapi["components"]["messages"][model.__name__]
        assert message["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        schema = asyncapi["components"]["schemas"][model.__name__]
        assert set(schema["properties"]) == set(model.model_fields)
    jobs = asyncapi["components"]["schemas"]["JobsRequest"]
    assert "owner" in jobs["properties"]
    assert jobs["required"] == ["limit"]


def test_a_retry_takes_an_optional_pipeline_and_answers_with_the_new_job(
    openapi: dict[str, Any],
) -> None:
    operation = openapi["paths"]["/api/v1/jobs/{job_id}/retry"]["post"]
    body = operation["requestBody"]
    assert body["required"] is False
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/RetryRequest")
    answer = operation["responses"]["202"]["content"]["application/json"]["schema"]
    assert answer["$ref"].endswith("/RetryAccepted")
    assert {"400", "403", "404", "409", "410", "429", "503"} <= set(operation["responses"])
    schemas = openapi["components"]["schemas"]
    assert {"id", "status", "links", "retry_of"} <= set(schemas["RetryAccepted"]["required"])
    assert {"retry_of", "retried_by"} <= set(schemas["Job"]["properties"])


def test_a_job_may_name_a_webhook_whose_notification_is_documented(
    openapi: dict[str, Any],
) -> None:
    operation = openapi["paths"]["/api/v1/jobs"]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["callback_url"]["maxLength"] == 2048
    (callback,) = operation["callbacks"]["jobEnded"].values()
    sent = callback["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert sent["$ref"].endswith("/WebhookNotification")
    headers = {p["name"] for p in callback["post"]["parameters"] if p["in"] == "header"}
    assert "X-Imagemesh-Signature" in headers
    assert "X-Imagemesh-Delivery" in headers
    secret = openapi["paths"]["/api/v1/webhooks/secret"]["get"]["responses"]["200"]
    assert secret["content"]["application/json"]["schema"]["$ref"].endswith("/WebhookSecret")
