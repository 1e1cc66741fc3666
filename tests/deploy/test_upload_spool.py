"""Where upload spools request bodies, in compose and Kubernetes: on a disk with room for
every upload in flight, never on /tmp (a tmpfs in compose: memory, charged to the 512m
container) and owned by the service's user."""

from __future__ import annotations

import re

from tests.deploy.test_compose import dockerfile, environment, mounts
from tests.deploy.test_k8s import config_map, container, objects

SPOOL = "/var/spool/imagemesh"
_QUANTITY = re.compile(r"^(\d+)(Mi|Gi)$")


def _room_needed(settings: dict[str, str]) -> int:
    """Every upload in flight at its largest (code defaults where a setting is not given)."""
    uploads = int(settings.get("UPLOAD_MAX_CONCURRENT_UPLOADS", "32"))
    return uploads * int(settings.get("IMAGE_MAX_BYTES", str(25 * 1024 * 1024)))


def test_compose_spools_uploads_to_a_named_volume_not_the_tmpfs() -> None:
    env = environment("upload")
    assert env["UPLOAD_SPOOL_DIR"] == SPOOL
    volumes = {target: source for source, target, _ in mounts("upload")}
    assert SPOOL in volumes, "upload's spool is a volume"
    assert not volumes[SPOOL].startswith((".", "/")), "a named volume, not a host path"
    # The image makes the directory for its user, so a new volume starts out writable.
    run = " ".join(i.args for i in dockerfile() if i.keyword == "RUN")
    assert f"install -d -o 10001 -g 10001 -m 0700 {SPOOL}" in run


def test_kubernetes_spools_uploads_to_a_disk_volume_with_room() -> None:
    settings = config_map()
    assert settings["UPLOAD_SPOOL_DIR"] == SPOOL
    upload = objects("Deployment")["upload"]
    mounted = {m["mountPath"]: m["name"] for m in container(upload)["volumeMounts"]}
    volumes = {v["name"]: v for v in upload["spec"]["template"]["spec"]["volumes"]}
    spool = volumes[mounted[SPOOL]]["emptyDir"]
    assert spool.get("medium") != "Memory", "node disk, not memory"
    size = _QUANTITY.fullmatch(spool["sizeLimit"])
    assert size, spool["sizeLimit"]
    room = int(size[1]) * 1024 ** (2 if size[2] == "Mi" else 3)
    assert room >= _room_needed(settings)
