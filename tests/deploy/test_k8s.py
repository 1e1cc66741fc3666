"""Static checks of deploy/k8s (Kustomize): every manifest valid against the Kubernetes
JSON schemas (kubernetes-validate bundles them, strict: unknown fields are errors), and in
agreement with the code: the settings each service reads, its port, its probes, its image,
the queues the autoscalers watch. No cluster needed."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no types
import pytest
import yaml

from messaging import topology
from tests.deploy.common import (
    APP_SERVICES,
    DEPLOY,
    PORT_SETTINGS,
    SCALED_SERVICES,
    default_port,
    env_example,
    secret_vars,
    settings_class,
    settings_vars,
)

K8S = DEPLOY / "k8s"
#: The oldest Kubernetes the manifests must suit (autoscaling/v2 is GA since 1.23).
KUBERNETES_VERSION = "1.29"
#: Files in deploy/k8s that kustomization.yaml does not apply, and why.
NOT_APPLIED = {
    "secret.template.yaml": "secrets are created out of band (kubectl create secret)",
    "keda-scaledobjects.yaml": "optional: KEDA instead of hpa.yaml; its CRDs have no schema here",
}
SECRET = "imagemesh-secrets"
CONFIG = "imagemesh-config"
#: The provisioning Jobs: name -> (image's service, module, settings class).
JOBS = {
    "provision-rabbitmq": (
        "upload",
        "messaging.provision",
        "messaging.provision:ProvisionSettings",
    ),
    "migrate-provenancedb": ("provenancedb", "provenancedb.migrate", "MigrateSettings"),
}
#: Secret keys that no Settings field reads under that name: the pod gets them as another
#: variable (each service's own S3 credentials become its S3_ACCESS_KEY/S3_SECRET_KEY).
RENAMED_SECRETS = {
    "S3_UPLOAD_ACCESS_KEY": "S3_ACCESS_KEY",
    "S3_UPLOAD_SECRET_KEY": "S3_SECRET_KEY",
    "S3_RUNNER_ACCESS_KEY": "S3_ACCESS_KEY",
    "S3_RUNNER_SECRET_KEY": "S3_SECRET_KEY",
    "RABBITMQ_UPLOAD_PASSWORD": "RABBITMQ_PASSWORD",
    "RABBITMQ_IMAGEPROC_RUNNER_PASSWORD": "RABBITMQ_PASSWORD",
    "RABBITMQ_IMAGEPROC_PASSWORD": "RABBITMQ_PASSWORD",
    "RABBITMQ_PROVENANCEDB_PASSWORD": "RABBITMQ_PASSWORD",
}
#: Read by the services but kept in the Secret though not secret: like compose, the API
#: tokens must be set on purpose (empty means no token is needed).
SECRET_BY_CHOICE = {"UPLOAD_API_TOKEN_HASHES"}


def k8s_name(service: str) -> str:
    return service.replace("_", "-")


# --- loading ----------------------------------------------------------------------------


@cache
def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@cache
def applied() -> tuple[dict[str, Any], ...]:
    """Every object kustomization.yaml applies."""
    return tuple(doc for name in kustomization()["resources"] for doc in documents(K8S / name))


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in applied() if doc["kind"] == kind}


def secret_template() -> dict[str, Any]:
    (secret,) = documents(K8S / "secret.template.yaml")
    assert secret["kind"] == "Secret"
    return secret


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def config_map() -> dict[str, str]:
    data = objects("ConfigMap")[CONFIG]["data"]
    assert all(isinstance(value, str) for value in data.values()), "ConfigMap values are strings"
    return dict(data)


def pod_environment(workload: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """A container's variables: (name -> literal value, from the ConfigMap included;
    name -> the Secret key it comes from)."""
    spec = container(workload)
    literal: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        assert source == {"configMapRef": {"name": CONFIG}}, source
        literal.update(config_map())
    from_secret: dict[str, str] = {}
    for var in spec.get("env", []):
        if "value" in var:
            literal[var["name"]] = var["value"]
            from_secret.pop(var["name"], None)
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] == SECRET, var
            from_secret[var["name"]] = ref["key"]
            literal.pop(var["name"], None)
    return literal, from_secret


def deployments() -> Iterator[tuple[str, dict[str, Any]]]:
    found = objects("Deployment")
    assert set(found) == {k8s_name(service) for service in APP_SERVICES}
    for service in APP_SERVICES:
        yield service, found[k8s_name(service)]


# --- the files --------------------------------------------------------------------------


def test_kustomization_applies_every_manifest_and_only_existing_ones() -> None:
    resources = kustomization()["resources"]
    assert len(resources) == len(set(resources))
    for name in resources:
        assert (K8S / name).is_file(), f"kustomization.yaml lists {name}, which is missing"
    present = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert present - set(resources) == set(NOT_APPLIED), "a manifest nobody applies"
    assert not set(NOT_APPLIED) & set(resources)
    assert kustomization()["namespace"] == "imagemesh"


def test_manifests_match_the_kubernetes_schemas() -> None:
    manifests = [*applied(), secret_template()]
    assert manifests
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(map(str, error.path))
            pytest.fail(f"{name}: {path}: {error.message}")


def test_names_are_valid_dns_labels() -> None:
    for manifest in applied():
        name = manifest["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name), name
        assert "namespace" not in manifest["metadata"], f"{name}: kustomization sets it"


def test_the_optional_keda_alternative_watches_the_same_queues() -> None:
    scaled = {
        doc["metadata"]["name"]: doc
        for doc in documents(K8S / "keda-scaledobjects.yaml")
        if doc["kind"] == "ScaledObject"
    }
    hpas = objects("HorizontalPodAutoscaler")
    assert set(scaled) == set(hpas)
    for name, doc in scaled.items():
        assert doc["spec"]["scaleTargetRef"]["name"] == name
        (trigger,) = doc["spec"]["triggers"]
        assert trigger["metadata"]["queueName"] == watched_queue(hpas[name])


# --- Deployments: images, ports, probes, security, resources --------------------------


def test_each_service_runs_its_image_pinned_by_the_kustomization() -> None:
    pinned = {image["name"]: image for image in kustomization()["images"]}
    for service, deployment in deployments():
        image = container(deployment)["image"]
        # The name compose gives the image it builds (project "imagemesh", service name).
        assert image == f"imagemesh-{service}", image
        assert re.fullmatch(r"\d+\.\d+\.\d+", pinned[image]["newTag"]), pinned[image]
    for name, (service, _, _) in JOBS.items():
        assert container(objects("Job")[name])["image"] == f"imagemesh-{service}"
    assert set(pinned) == {f"imagemesh-{service}" for service in APP_SERVICES}


def test_probes_and_metrics_use_the_port_the_service_binds() -> None:
    for service, deployment in deployments():
        spec = container(deployment)
        port = default_port(service)
        literal, _ = pod_environment(deployment)
        assert literal[PORT_SETTINGS[service]] == str(port), "state the port the probes use"
        (declared,) = spec["ports"]
        assert declared["containerPort"] == port
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = spec[probe]["httpGet"]
            assert get["path"] == path, f"{service}: {probe}"
            assert get["port"] in (declared["name"], port), f"{service}: {probe} port"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_pods_are_unprivileged_and_bounded() -> None:
    shutdown = int(config_map()["SHUTDOWN_TIMEOUT_SECONDS"])
    workloads = [deployment for _, deployment in deployments()]
    workloads += [objects("Job")[name] for name in JOBS]
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, f"{name}: the image's user"
        assert pod["automountServiceAccountToken"] is False, name
        spec = container(workload)
        security = spec["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        resources = spec["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert {"cpu", "memory"} <= set(resources["limits"]), name
        if workload["kind"] == "Deployment":
            assert pod["terminationGracePeriodSeconds"] > shutdown, f"{name}: killed mid-drain"
            mounts = {m["mountPath"]: m["name"] for m in spec["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: a writable /tmp"


def test_scaled_services_run_several_replicas_and_only_upload_has_a_service() -> None:
    for service, deployment in deployments():
        if service in SCALED_SERVICES:
            assert deployment["spec"]["replicas"] >= 2, service
    (front,) = objects("Service").values()
    upload = objects("Deployment")["upload"]
    labels = upload["spec"]["template"]["metadata"]["labels"]
    assert front["spec"]["selector"].items() <= labels.items()
    assert upload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = front["spec"]["ports"]
    assert port["targetPort"] in ("http", default_port("upload"))


# --- configuration: every setting from the ConfigMap or the Secret ----------------------


def test_each_service_gets_every_setting_it_reads() -> None:
    for service, deployment in deployments():
        literal, from_secret = pod_environment(deployment)
        missing = settings_vars(service) - set(literal) - set(from_secret)
        assert not missing, f"{service}: neither ConfigMap nor Secret sets {sorted(missing)}"


def test_commands_get_every_setting_they_read() -> None:
    for name, (service, module, settings) in JOBS.items():
        job = objects("Job")[name]
        spec = container(job)
        assert spec["command"] == ["python", "-m", module]
        assert importlib.util.find_spec(module) is not None, module
        assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
        literal, from_secret = pod_environment(job)
        cls = settings_class(service, settings)
        required = {n.upper() for n, field in cls.model_fields.items() if field.is_required()}
        assert not required - set(literal) - set(from_secret), name
        assert set(from_secret) <= settings_vars(service, settings), name


def test_secrets_come_from_the_secret_and_nothing_else_does() -> None:
    template = secret_template()["stringData"]
    assert set(template.values()) == {""}, "the template holds no value"
    assert not set(config_map()) & secret_vars(), "a secret in the ConfigMap"
    used: set[str] = set()
    workloads = [deployment for _, deployment in deployments()]
    workloads += [objects("Job")[name] for name in JOBS]
    for workload in workloads:
        literal, from_secret = pod_environment(workload)
        name = workload["metadata"]["name"]
        assert not set(literal) & secret_vars(), f"{name}: a secret as a literal"
        for var, key in from_secret.items():
            assert key in template, f"{name}: {key} is not in the Secret"
            assert var in (key, RENAMED_SECRETS.get(key)), f"{name}: {var} from {key}"
            used.add(key)
    assert used == set(template), f"Secret keys nobody reads: {sorted(set(template) - used)}"
    assert secret_vars() | SECRET_BY_CHOICE <= set(template) | {"S3_SECRET_KEY"}


def test_config_map_names_are_settings_and_its_values_parse() -> None:
    read = set().union(*(settings_vars(service) for service in APP_SERVICES))
    for service, _, settings in JOBS.values():
        read |= settings_vars(service, settings)
    unknown = set(config_map()) - read
    assert not unknown, f"the ConfigMap sets {sorted(unknown)}, which nothing reads"
    assert set(config_map()) <= set(env_example()), "document every name in .env.example"
    assert config_map()["IMAGEMESH_ENV"] == "production"
    assert config_map()["AMQP_DECLARE_EXCHANGES"] == "false", "exchanges are provisioned"
    for service, deployment in deployments():
        literal, from_secret = pod_environment(deployment)
        values = {**literal, **dict.fromkeys(from_secret, "x" * 16)}
        values.pop("UPLOAD_API_TOKEN_HASHES", None)  # a list of hashes: not "x"s
        cls = settings_class(service)
        fields = {name.lower(): value for name, value in values.items()}
        cls.model_validate({k: v for k, v in fields.items() if k in cls.model_fields})


# --- autoscaling on queue depth ---------------------------------------------------------


def watched_queue(hpa: dict[str, Any]) -> str:
    (external,) = [m["external"] for m in hpa["spec"]["metrics"] if m["type"] == "External"]
    assert external["metric"]["name"] == "rabbitmq_queue_messages_ready"
    queue = external["metric"]["selector"]["matchLabels"]["queue"]
    assert isinstance(queue, str)
    return queue


def test_autoscalers_watch_the_queues_their_deployments_consume() -> None:
    expected = {
        "imageproc-runner": topology.RUNNER_UPLOADS.name,
        "imageproc": topology.IMAGEPROC_RUN.queue_name,
    }
    hpas = objects("HorizontalPodAutoscaler")
    assert set(hpas) == set(expected)
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert watched_queue(hpa) == expected[name]
        assert hpa["spec"]["minReplicas"] >= 2
        assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
        deployment = objects("Deployment")[name]
        assert deployment["spec"]["replicas"] == hpa["spec"]["minReplicas"]
