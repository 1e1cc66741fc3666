"""imageproc's own limits against its container's, in compose and Kubernetes (bounded
work per image): the workers' memory ceiling is below the container's limit with room for the
parent process, so a greedy image ends as `memory_budget_exceeded`, never an OOM kill; and
the runner waits longer for imageproc than imageproc's deadline can take, so imageproc's
own `timeout` answer comes first."""

from __future__ import annotations

import re

import pytest

from imageproc.workers import _GRACE
from tests.deploy.common import env_example
from tests.deploy.test_compose import environment, services
from tests.deploy.test_k8s import container, deployments, pod_environment

PARENT_MIB = 256
"""The imageproc parent (RPC, metrics) and the forkserver: ~150 MiB measured, plus room."""

_UNITS = {"": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024, "ki": 1 / 1024, "mi": 1, "gi": 1024}


def mebibytes(quantity: str) -> float:
    """A compose (`2g`, `512m`) or Kubernetes (`2Gi`, `512Mi`) memory size in MiB."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]i?)?b?", quantity.strip().lower())
    assert match, f"not a memory size: {quantity!r}"
    return float(match[1]) * _UNITS[match[2] or ""]


def resolved(value: str) -> str:
    """A compose value's `${NAME:-default}` as its default (what .env.example leaves)."""
    match = re.fullmatch(r"\$\{(\w+):-([^}]*)\}", value)
    return match[2] if match else value


def check(where: str, settings: dict[str, str], container_mib: float) -> None:
    ceiling = int(settings["IMAGEPROC_MEMORY_LIMIT_MB"])
    assert ceiling > 0, f"{where}: imageproc runs without a memory ceiling"
    assert ceiling + PARENT_MIB <= container_mib, (
        f"{where}: workers' ceiling {ceiling} MiB + {PARENT_MIB} MiB for the parent exceeds "
        f"the container's {container_mib:g} MiB: the kernel would kill imageproc first"
    )


def test_compose_ceiling_is_below_the_container_limit() -> None:
    imageproc = services()["imageproc"]
    limit = mebibytes(str(imageproc["deploy"]["resources"]["limits"]["memory"]))
    settings = {name: resolved(value) for name, value in environment("imageproc").items()}
    check("compose", settings, limit)
    check("compose with .env.example", env_example(), limit)


def test_kubernetes_ceiling_is_below_the_container_limit() -> None:
    (workload,) = [workload for service, workload in deployments() if service == "imageproc"]
    limit = mebibytes(str(container(workload)["resources"]["limits"]["memory"]))
    literal, _ = pod_environment(workload)
    check("k8s", literal, limit)


@pytest.mark.parametrize("where", ["compose", "k8s", ".env.example"])
def test_the_runner_outwaits_imageproc_deadline(where: str) -> None:
    """A request may wait for a busy slot (one pipeline) and then run (another)."""
    if where == "compose":
        settings = {
            name: resolved(value)
            for service in ("imageproc", "imageproc_runner")
            for name, value in environment(service).items()
        }
    elif where == "k8s":
        settings = {}
        for _, workload in deployments():
            settings.update(pod_environment(workload)[0])
    else:
        settings = env_example()
    pipeline = float(settings["PIPELINE_TIMEOUT_SECONDS"]) + _GRACE
    assert float(settings["IMAGEPROC_TIMEOUT_SECONDS"]) > 2 * pipeline, where


def test_sizes_parse() -> None:
    assert mebibytes("2g") == mebibytes("2Gi") == 2048
    assert mebibytes("512m") == mebibytes("512Mi") == 512
