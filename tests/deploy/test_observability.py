"""Static checks of the observability files: deploy/prometheus/prometheus.yml scrapes every
replica of every service on its real port, and RabbitMQ; the Grafana provisioning names one
data source; and the dashboard (deploy/grafana/dashboards/imagemesh.json) is well formed,
uses that data source, and queries only metrics the code registers (or RabbitMQ's and the
process collector's), so it cannot drift from the code. No Docker, no Grafana needed."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.deploy.common import APP_SERVICES, DEPLOY, default_port

PROMETHEUS_FILE = DEPLOY / "prometheus" / "prometheus.yml"
DATASOURCES_FILE = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS_FILE = DEPLOY / "grafana" / "provisioning" / "dashboards" / "imagemesh.yml"
DASHBOARD_FILE = DEPLOY / "grafana" / "dashboards" / "imagemesh.json"
RABBITMQ_CONF = DEPLOY / "rabbitmq" / "rabbitmq.conf"
COMPOSE_FILE = DEPLOY / "compose.yml"

#: Where the imagemesh_* metrics are defined (each library's code path owns its metrics).
METRIC_MODULES = (
    "servicekit._metrics",
    "messaging._metrics",
    "objectstore._store",
    "provenancedb.store",
    "imageproc.service",
    "imageproc_runner.runner",
)
#: RabbitMQ's prometheus plugin, per-object series (rabbitmq.conf:
#: prometheus.return_per_object_metrics = true), that the dashboard may use.
RABBITMQ_METRICS = frozenset(
    {
        "rabbitmq_queue_messages_ready",
        "rabbitmq_queue_messages_unacked",
        "rabbitmq_queue_messages",
        "rabbitmq_queue_consumers",
    }
)
#: Prometheus' own series for every target.
SCRAPE_METRICS = frozenset({"up", "scrape_duration_seconds"})
#: Words of PromQL that are not metric names.
PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "inf", "nan"}
)
QUANTILE_PANELS = ("latency", "duration", "p95")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@cache
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return data


def graph_panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def expressions() -> list[str]:
    return [target["expr"] for panel in graph_panels() for target in panel["targets"]]


@cache
def registered_metrics() -> frozenset[str]:
    """Every sample name the code's metrics (and the default collectors) can expose: a
    counter `x` as `x_total`, a histogram as `x_bucket`/`x_count`/`x_sum`, an info as
    `x_info`; labelled metrics count even before their first sample."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created"),
        "info": ("_info",),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (in matchers or by/without/on/ignoring/group_* lists) or inside
    strings and range brackets."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings (label values, regexes)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges ([$__rate_interval])
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text
    )  # grouping labels
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        is_call = text[match.end() :].lstrip().startswith("(")  # a function, or sum/rate
        if not is_call and match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_every_replica_of_every_service_on_its_port() -> None:
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS_FILE)["scrape_configs"]}
    assert set(APP_SERVICES) <= set(jobs)
    for service in APP_SERVICES:
        [discovery] = jobs[service]["dns_sd_configs"]
        # All A records of the compose service name: one per replica (`--scale`).
        assert discovery == {
            "names": [service],
            "type": "A",
            "port": default_port(service),
            "refresh_interval": discovery.get("refresh_interval", "30s"),
        }
        assert "static_configs" not in jobs[service]
    compose_services = load_yaml(COMPOSE_FILE)["services"]
    for name, job in jobs.items():
        hosts = [t.rsplit(":", 1)[0] for c in job.get("static_configs", []) for t in c["targets"]]
        hosts += [n for c in job.get("dns_sd_configs", []) for n in c["names"]]
        assert all(host == "localhost" or host in compose_services for host in hosts), name


def test_rabbitmq_queue_metrics_are_scraped_as_the_dashboard_queries_them() -> None:
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS_FILE)["scrape_configs"]}
    rabbitmq = jobs["rabbitmq"]
    assert rabbitmq["static_configs"] == [{"targets": ["rabbitmq:15692"]}]
    used = set().union(*(metric_names(expr) for expr in expressions()))
    if any(name.startswith("rabbitmq_detailed_") for name in used):
        assert rabbitmq.get("metrics_path") == "/metrics/detailed"
    else:
        # The aggregated endpoint, with a series per queue.
        assert rabbitmq.get("metrics_path", "/metrics") == "/metrics"
        conf = RABBITMQ_CONF.read_text()
        assert re.search(r"^prometheus\.return_per_object_metrics\s*=\s*true$", conf, re.M)
        plugins = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text()
        assert "rabbitmq_prometheus" in plugins
    assert used & RABBITMQ_METRICS, "the dashboard shows no queue depth"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus not installed")
def test_promtool_accepts_the_configuration() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(PROMETHEUS_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- Grafana


def test_one_prometheus_data_source_is_provisioned() -> None:
    provisioned = load_yaml(DATASOURCES_FILE)
    assert provisioned["apiVersion"] == 1
    [source] = provisioned["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["uid"]


def test_the_dashboard_provider_reads_the_folder_compose_mounts() -> None:
    [provider] = load_yaml(PROVIDERS_FILE)["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    grafana = load_yaml(COMPOSE_FILE)["services"]["grafana"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in grafana["volumes"]}
    assert mounts[path] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] == "imagemesh"
    assert board["title"]
    panels = board["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in graph_panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
    titles = " / ".join(panel["title"].lower() for panel in graph_panels())
    for topic in ("queue depth", "jobs/s", "p95", "failed", "memory (rss)"):
        assert topic in titles, f"no panel about {topic}: {titles}"


def test_every_panel_and_query_uses_the_provisioned_data_source() -> None:
    [source] = load_yaml(DATASOURCES_FILE)["datasources"]
    expected = {"type": "prometheus", "uid": source["uid"]}
    for panel in graph_panels():
        assert panel["datasource"] == expected, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", expected) == expected, panel["title"]


def test_every_metric_the_dashboard_queries_is_registered_by_the_code() -> None:
    known = registered_metrics() | RABBITMQ_METRICS | SCRAPE_METRICS
    unknown = {
        (panel["title"], name)
        for panel in graph_panels()
        for target in panel["targets"]
        for name in metric_names(target["expr"])
        if name not in known
    }
    assert not unknown, f"queried but never exposed: {sorted(unknown)}"
    assert any(name.startswith("imagemesh_") for name in known)


def test_percentiles_come_from_histogram_buckets_grouped_by_le() -> None:
    quantiles = [expr for expr in expressions() if "histogram_quantile" in expr]
    assert quantiles
    for expr in quantiles:
        assert re.search(r"sum by \(le\b", expr), expr
        assert all(name.endswith("_bucket") for name in metric_names(expr)), expr


def test_the_dashboard_selects_services_by_their_job_names() -> None:
    jobs = {job["job_name"] for job in load_yaml(PROMETHEUS_FILE)["scrape_configs"]}
    for expr in expressions():
        for match in re.finditer(r'job=~?"([^"]*)"', expr):
            assert set(match.group(1).split("|")) <= jobs, expr


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(x_bucket{route!~".*/events"}'
        "[$__rate_interval]))) / on (job) group_left(service) y_info or z"
    )
    assert metric_names(expr) == {"x_bucket", "y_info", "z"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus not installed")
def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:query{n}",
                        "expr": expr.replace("$__rate_interval", "1m"),
                    }
                    for n, expr in enumerate(expressions())
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
