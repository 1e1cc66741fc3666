"""Each service reaches only what it talks to: compose's networks and the Kubernetes
NetworkPolicies, checked against what each container's own configuration says it talks to
(its settings' hosts and URLs, its script, prometheus.yml, Grafana's data source). imageproc
talks to RabbitMQ only."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from ipaddress import ip_address, ip_network
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.deploy.common import APP_SERVICES, DEPLOY, PORT_SETTINGS, settings_class
from tests.deploy.test_compose import COMMANDS, environment, services
from tests.deploy.test_compose import compose as compose_file
from tests.deploy.test_k8s import JOBS, config_map, k8s_name, objects, pod_environment
from upload.ssrf import refusal

#: The settings that name a server, and which server that is in compose.
SERVER_SETTINGS = {"rabbitmq_host": "rabbitmq", "s3_url": "minio", "couchdb_url": "couchdb"}
#: The one network with a route out: only for publishing ports; containers on it cannot
#: reach each other.
EDGE = "edge"
URL_HOST = re.compile(r"\bhttps?://([A-Za-z0-9_.-]+)")


# --- compose: who talks to whom, from each container's own configuration -----------------


def hosts_in(values: Iterable[str]) -> set[str]:
    """The compose services named as hosts of the URLs in `values`."""
    return {host for value in values for host in URL_HOST.findall(value)} & set(services())


def script_of(name: str) -> list[str]:
    spec = services()[name]
    return [str(part) for key in ("entrypoint", "command") for part in spec.get(key) or []]


@cache
def prometheus_targets() -> frozenset[str]:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets: set[str] = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            targets.update(sd["names"])
        for static in job.get("static_configs", []):
            targets.update(target.rsplit(":", 1)[0] for target in static["targets"])
    return frozenset(targets - {"localhost"})


@cache
def grafana_sources() -> frozenset[str]:
    path = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    sources = yaml.safe_load(path.read_text())["datasources"]
    return frozenset(hosts_in(source["url"] for source in sources))


def talks_to(name: str) -> set[str]:
    """The servers `name` connects to, from its configuration."""
    if services()[name].get("network_mode") == "none":
        return set()
    if name == "prometheus":
        return set(prometheus_targets())
    if name == "grafana":
        return set(grafana_sources())
    env = environment(name)
    # *_HOST names a server, but HTTP_HOST, the address the service listens on.
    hosts = {value for var, value in env.items() if var.endswith("_HOST")} & set(services())
    return hosts | hosts_in([*env.values(), *script_of(name)])


def networks_of(name: str) -> set[str]:
    networks = services()[name].get("networks", [])
    return set(networks if isinstance(networks, list) else networks.keys())


def members(network: str) -> set[str]:
    return {name for name in services() if network in networks_of(name)}


def reaches(name: str) -> set[str]:
    """Who `name` can open a connection to: whoever shares a network with it (but on the
    edge network, where inter-container traffic is off)."""
    shared = set().union(*(members(n) for n in networks_of(name) - {EDGE}))
    return shared - {name}


def test_each_container_reaches_exactly_what_it_talks_to_and_who_talks_to_it() -> None:
    talks = {name: talks_to(name) for name in services()}
    for name in services():
        # A bridge network carries both directions: the clients of a server reach it, it
        # reaches them, and nobody else.
        expected = talks[name] | {other for other, servers in talks.items() if name in servers}
        assert reaches(name) == expected, name


def test_what_the_services_talk_to_is_what_their_settings_need() -> None:
    """The hosts in a service's compose environment are the servers its settings class
    has a setting for: a service without S3 settings is on no S3 network."""
    for service in APP_SERVICES:
        fields = settings_class(service).model_fields
        needed = {server for setting, server in SERVER_SETTINGS.items() if setting in fields}
        assert talks_to(service) == needed, service
    for name, command in COMMANDS.items():
        if services()[name].get("network_mode") == "none":
            continue
        fields = settings_class(command.service, command.settings).model_fields
        needed = {server for setting, server in SERVER_SETTINGS.items() if setting in fields}
        assert talks_to(name) == needed, name


def test_imageproc_is_on_the_broker_network_only() -> None:
    (network,) = networks_of("imageproc")
    assert members(network) == {"imageproc", "rabbitmq", "prometheus"}
    assert reaches("imageproc") == {"rabbitmq", "prometheus"}
    assert talks_to("imageproc") == {"rabbitmq"}
    assert compose_file()["networks"][network] == {"internal": True}


def test_every_container_is_on_declared_networks_with_no_route_out_but_the_edge() -> None:
    declared = compose_file()["networks"]
    used = set().union(*(networks_of(name) for name in services()))
    assert used == set(declared), "declare every network used, use every one declared"
    for name, spec in services().items():
        # No `networks:` would put it on compose's default network, shared by all.
        assert networks_of(name) or spec.get("network_mode") == "none", name
    for network, spec in declared.items():
        if network == EDGE:
            assert spec == {"driver_opts": {"com.docker.network.bridge.enable_icc": "false"}}
        else:
            assert spec == {"internal": True}, network
    published = {name for name, spec in services().items() if spec.get("ports")}
    assert members(EDGE) == published
    # The consoles and the upload form stay published.
    assert {"upload", "rabbitmq", "couchdb", "minio", "prometheus", "grafana"} <= published


def test_prometheus_scrapes_every_service_it_can_reach() -> None:
    assert prometheus_targets() == {*APP_SERVICES, "rabbitmq"}
    for target in prometheus_targets():
        assert target in reaches("prometheus"), target
    assert grafana_sources() == {"prometheus"}


# --- Kubernetes: NetworkPolicies -----------------------------------------------------------

DNS = frozenset({("kube-system/kube-dns", "UDP", 53), ("kube-system/kube-dns", "TCP", 53)})
MONITORING = "monitoring"
#: Which connection settings each Job uses (their settings classes read more than that:
#: provision-rabbitmq speaks to the management API only).
JOB_CONNECTIONS = {
    "provision-rabbitmq": ("RABBITMQ_MANAGEMENT_URL",),
    "migrate-provenancedb": ("COUCHDB_URL",),
}


def policies() -> dict[str, dict[str, Any]]:
    return objects("NetworkPolicy")


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert isinstance(labels, dict)
    return labels


def selecting(labels: dict[str, str]) -> list[dict[str, Any]]:
    chosen = []
    for policy in policies().values():
        selector = policy["spec"]["podSelector"]
        assert set(selector) <= {"matchLabels"}, "labels only: what a test can follow"
        if selector.get("matchLabels", {}).items() <= labels.items():
            chosen.append(policy)
    return chosen


PUBLIC = "public addresses"
"""The peer an `ipBlock` of the whole address space, less the non-global ranges, is."""
WEB_PORTS = {(PUBLIC, "TCP", 80), (PUBLIC, "TCP", 443)}


def peer(entry: dict[str, Any]) -> str:
    if "ipBlock" in entry:
        assert entry["ipBlock"]["cidr"] in {"0.0.0.0/0", "::/0"}, entry
        assert entry["ipBlock"].get("except"), "the whole address space, less private ranges"
        return PUBLIC
    assert set(entry) <= {"namespaceSelector", "podSelector"}, entry
    namespace = entry["namespaceSelector"]["matchLabels"]
    assert set(namespace) == {"kubernetes.io/metadata.name"}, namespace
    name = str(namespace["kubernetes.io/metadata.name"])
    if "podSelector" in entry:
        return f"{name}/{entry['podSelector']['matchLabels']['k8s-app']}"
    return name


def allowed(workload: dict[str, Any], direction: str) -> set[tuple[str, str, int]]:
    """(peer, protocol, port) a pod may open (egress) or accept (ingress; peer `*`: any)."""
    key, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    result = set()
    for policy in selecting(pod_labels(workload)):
        assert direction in policy["spec"]["policyTypes"] or key not in policy["spec"]
        for rule in policy["spec"].get(key, []):
            assert rule.get("ports"), f"{policy['metadata']['name']}: a rule for every port"
            sources = [peer(entry) for entry in rule[peers]] if peers in rule else ["*"]
            assert direction == "Ingress" or "*" not in sources, "egress to anywhere"
            for port in rule["ports"]:
                result |= {(source, port["protocol"], port["port"]) for source in sources}
    return result


def destination(setting: str) -> tuple[str, str, int]:
    """Where a ConfigMap setting points: (namespace, TCP, port)."""
    config = config_map()
    if setting == "RABBITMQ_HOST":
        host, port = config["RABBITMQ_HOST"], int(config["RABBITMQ_PORT"])
    else:
        url = urlsplit(config[setting])
        assert url.hostname, setting
        assert url.port, setting
        host, port = url.hostname, url.port
    match = re.fullmatch(r"[a-z0-9-]+\.([a-z0-9-]+)\.svc\.cluster\.local", host)
    assert match, f"{setting}: {host} is not <service>.<namespace>.svc.cluster.local"
    return match[1], "TCP", port


def test_a_default_deny_policy_covers_every_pod_both_ways() -> None:
    denies = [
        p
        for p in policies().values()
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert denies, "no default-deny NetworkPolicy"


def test_every_deployment_reaches_only_dns_and_the_servers_its_settings_name() -> None:
    settings_of = {"rabbitmq_host": "RABBITMQ_HOST", "s3_url": "S3_URL"}
    settings_of["couchdb_url"] = "COUCHDB_URL"
    for service in APP_SERVICES:
        deployment = objects("Deployment")[k8s_name(service)]
        fields = settings_class(service).model_fields
        expected = {destination(var) for field, var in settings_of.items() if field in fields}
        if "webhook_allowed_networks" in fields:  # it sends webhooks
            expected |= WEB_PORTS
        assert allowed(deployment, "Egress") == DNS | expected, service
        # What the policy allows is where the pod's settings point (ConfigMap or its own).
        literal, _ = pod_environment(deployment)
        for var in ("RABBITMQ_HOST", "S3_URL", "COUCHDB_URL"):
            assert literal.get(var, config_map().get(var)) == config_map().get(var), var


def test_webhooks_reach_public_addresses_only() -> None:
    """upload's webhook egress: the whole address space less every range upload's own
    check refuses (each excepted network is refused by it; each non-global range the
    check knows of is excepted), so a bug in that check still reaches nothing inside."""
    blocks = [
        entry["ipBlock"]
        for policy in selecting(pod_labels(objects("Deployment")["upload"]))
        for rule in policy["spec"].get("egress", [])
        for entry in rule.get("to", [])
        if "ipBlock" in entry
    ]
    assert {block["cidr"] for block in blocks} == {"0.0.0.0/0", "::/0"}
    excepted = [ip_network(cidr) for block in blocks for cidr in block["except"]]
    for network in excepted:
        assert refusal(network[0]) is not None, f"{network} holds public addresses"
        assert refusal(network[-1]) is not None, f"{network} holds public addresses"
    for special in ("10.0.0.1", "172.16.0.1", "192.168.0.1", "127.0.0.1", "169.254.169.254",
                    "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fd00::1", "fe80::1",
                    "::ffff:10.0.0.1", "64:ff9b::a00:1"):  # fmt: skip
        address = ip_address(special)
        assert any(address in network for network in excepted), special


def test_imageproc_reaches_only_the_broker_port_and_dns() -> None:
    egress = allowed(objects("Deployment")["imageproc"], "Egress")
    broker = (destination("RABBITMQ_HOST")[0], "TCP", int(config_map()["RABBITMQ_PORT"]))
    assert egress == DNS | {broker}


def test_jobs_reach_only_what_they_provision() -> None:
    assert set(JOB_CONNECTIONS) == set(JOBS)
    for name, connections in JOB_CONNECTIONS.items():
        job = objects("Job")[name]
        _, _, settings = JOBS[name]
        fields = settings_class(JOBS[name][0], settings).model_fields
        assert all(var.lower() in fields for var in connections), name
        assert allowed(job, "Egress") == DNS | {destination(var) for var in connections}, name
        assert allowed(job, "Ingress") == set(), name


def test_ingress_is_the_upload_form_and_prometheus_scrapes_only() -> None:
    for service in APP_SERVICES:
        deployment = objects("Deployment")[k8s_name(service)]
        port = int(pod_environment(deployment)[0][PORT_SETTINGS[service]])
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == port
        expected = {("*" if service == "upload" else MONITORING, "TCP", port)}
        assert allowed(deployment, "Ingress") == expected, service


def test_every_policy_applies_to_a_pod() -> None:
    workloads = [*objects("Deployment").values(), *(objects("Job")[name] for name in JOBS)]
    for name, policy in policies().items():
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        assert any(selector.items() <= pod_labels(w).items() for w in workloads), name
