"""Prometheus metrics of the running mesh: one job moves the counters and histograms of
every service it passes through (scraped from each service's /metrics, as Prometheus
does); labels stay bounded (route templates, queue and route names, never a job id); and
a real Prometheus (Debian's, when installed) scrapes all four with the local stack's
generated configuration."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import stack
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SERVICES, Mesh, free_port
from tests.e2e.helpers import photo, submit, wait_finished
from tests.waiting import async_wait_for, wait_for

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PIPELINE = [{"op": "thumbnail", "width": 96}, {"op": "grayscale"}]


async def scrape(http: aiohttp.ClientSession, mesh: Mesh, service: str) -> Samples:
    """Every sample a service's /metrics exposes, by (name, labels)."""
    async with http.get(f"{mesh.ops_url(service)}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape_all(http: aiohttp.ClientSession, mesh: Mesh) -> dict[str, Samples]:
    return {service: await scrape(http, mesh, service) for service in SERVICES}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# What one job adds, at least, per service: (sample name, labels as `k=v` words, increase).
EXPECTED: dict[str, list[tuple[str, str, float]]] = {
    # the HTTP request by its route template, the input in S3 (the intake is published)
    "upload": [
        ("imagemesh_http_requests_total", "route=/api/v1/jobs method=POST status=202", 1),
        ("imagemesh_http_requests_total", "route=/api/v1/jobs/{job_id} method=GET status=200", 1),
        ("imagemesh_http_request_seconds_count", "route=/api/v1/jobs method=POST", 1),
        ("imagemesh_s3_request_seconds_count", "operation=put outcome=ok", 1),
    ],
    # the job, its wait in the queue, S3 in and out, the RPC to imageproc
    "imageproc_runner": [
        ("imagemesh_runner_jobs_total", "outcome=succeeded error_code=", 1),
        ("imagemesh_runner_job_seconds_count", "outcome=succeeded", 1),
        ("imagemesh_queue_wait_seconds_count", "queue=imageproc_runner.image-uploaded", 1),
        (
            "imagemesh_message_handling_seconds_count",
            "queue=imageproc_runner.image-uploaded outcome=acked",
            1,
        ),
        ("imagemesh_s3_request_seconds_count", "operation=get outcome=ok", 1),
        ("imagemesh_s3_request_seconds_count", "operation=put outcome=ok", 1),
        ("imagemesh_rpc_client_seconds_count", "route=imageproc.run outcome=ok", 1),
    ],
    # each operation, the whole pipeline, the encode, the RPC as served
    "imageproc": [
        ("imagemesh_imageproc_operation_seconds_count", "op=thumbnail", 1),
        ("imagemesh_imageproc_operation_seconds_count", "op=grayscale", 1),
        ("imagemesh_imageproc_pipeline_seconds_count", "outcome=ok", 1),
        ("imagemesh_imageproc_encode_seconds_count", "format=jpeg", 1),
        ("imagemesh_rpc_server_seconds_count", "route=imageproc.run outcome=ok", 1),
    ],
    # the job's events written to CouchDB (several to a request when they come together),
    # the intake among them
    "provenancedb": [
        ("imagemesh_couchdb_request_seconds_count", "operation=record outcome=ok", 1),
        ("imagemesh_queue_wait_seconds_count", "queue=provenancedb.events", 4),
    ],
}


def _labels(words: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in words.split())


def missing(before: Mapping[str, Samples], after: Mapping[str, Samples]) -> list[str]:
    problems = []
    for service, expected in EXPECTED.items():
        for name, words, delta in expected:
            was = value(before[service], name, **_labels(words))
            now = value(after[service], name, **_labels(words))
            if now - was < delta:
                problems.append(f"{service} {name}{{{words}}}: {was} -> {now}, not +{delta:g}")
    return problems


async def test_a_job_moves_the_metrics_of_every_service_it_passes(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    before = await scrape_all(http, mesh)
    image = photo(320, 240)
    response = await submit(http, mesh.upload_url, image, json.dumps(PIPELINE))
    assert response.status == 202, await response.text()
    job_id = (await response.json())["id"]
    job = await wait_finished(http, mesh.upload_url, job_id)
    assert job["status"] == "succeeded", job

    # The services count after they publish: the job may look finished a moment before.
    latest: dict[str, dict[str, Samples]] = {}

    async def moved() -> bool:
        latest["after"] = await scrape_all(http, mesh)
        return not missing(before, latest["after"])

    try:
        await async_wait_for(moved, timeout=15)
    except AssertionError:
        pytest.fail("metrics did not move:\n" + "\n".join(missing(before, latest["after"])))
    after = latest["after"]

    received = value(after["upload"], "imagemesh_http_received_bytes_total", route="/api/v1/jobs")
    assert received - value(
        before["upload"], "imagemesh_http_received_bytes_total", route="/api/v1/jobs"
    ) >= len(image)
    for service, samples in after.items():
        builds = [labels for (name, labels), v in samples.items() if name == "imagemesh_build_info"]
        assert [dict(labels)["service"] for labels in builds] == [service]
        assert value(samples, "process_resident_memory_bytes") > 0
        assert value(samples, "process_cpu_seconds_total") > 0
        leaked = {name for (name, labels), _ in samples.items() if job_id in str(labels)}
        assert not leaked, f"{service}: job id in labels of {leaked}"


@pytest.fixture
def prometheus(mesh: Mesh, tmp_path: Path) -> Iterator[str]:
    """Debian's Prometheus with the local stack's generated configuration for the mesh's
    ports, scraping every second; its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (make up-observability installs it)")
    config = stack.prometheus_config(stack.Config.of(mesh.env))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    argv = [binary, "--config.file", str(path), "--storage.tsdb.path", str(tmp_path / "data")]
    process = subprocess.Popen(
        [*argv, "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: stack.http_ok(f"{url}/-/ready") or process.poll() is not None)
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


async def test_a_local_prometheus_scrapes_every_service(
    prometheus: str, http: aiohttp.ClientSession
) -> None:
    async def query(expr: str) -> list[dict[str, Any]]:
        async with http.get(f"{prometheus}/api/v1/query", params={"query": expr}) as response:
            body = await response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def all_up() -> list[dict[str, Any]] | None:
        up = await query("up == 1")
        return up if len(up) == len(SERVICES) else None

    up = await async_wait_for(all_up, timeout=30)
    assert {series["metric"]["job"] for series in up} == set(SERVICES)
    builds = await query("imagemesh_build_info")
    assert {(b["metric"]["job"], b["metric"]["service"]) for b in builds} == {
        (service, service) for service in SERVICES
    }
    rss = await query("process_resident_memory_bytes")
    assert {series["metric"]["job"] for series in rss} == set(SERVICES)
