"""Provision the broker for least privilege, as its administrator, through the management
HTTP API: the vhost, the mesh's exchanges, and each service's user with exactly its grants
(`permissions`). Idempotent.

    python -m messaging.provision     (the local stack and the k8s provision-rabbitmq Job run it)
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .constants import SERVICES
from .definitions import UsersSettings, from_environment
from .permissions import provisioning


class ProvisionSettings(UsersSettings):
    """The administrator's connection (RABBITMQ_USER/RABBITMQ_PASSWORD), where its
    management API is, and the services' passwords."""

    rabbitmq_management_url: str = "http://127.0.0.1:15672"


class ProvisionError(RuntimeError):
    pass


def provision(settings: ProvisionSettings) -> list[str]:
    """Apply every step; returns what was done, one line each."""
    vhost = settings.rabbitmq_vhost
    plan = provisioning(settings)
    steps: list[tuple[str, dict[str, Any]]] = [(f"/vhosts/{_q(vhost)}", {})]
    steps += [
        (f"/exchanges/{_q(vhost)}/{_q(name)}", {"type": kind, "durable": True})
        for name, kind in plan["exchanges"].items()
    ]
    for service in SERVICES:
        grant = plan["grants"][service]
        user, password = settings.service_user(service)
        steps.append((f"/users/{_q(user)}", {"password": password, "tags": ""}))
        permissions = {key: grant[key] for key in ("configure", "write", "read")}
        steps.append((f"/permissions/{_q(vhost)}/{_q(user)}", permissions))
        for exchange, write in grant["topics"].items():
            topic = {"exchange": exchange, "write": write, "read": ".*"}
            steps.append((f"/topic-permissions/{_q(vhost)}/{_q(user)}", topic))
    for path, payload in steps:
        _put(settings, path, payload)
    return [f"PUT {path}" for path, _ in steps if not path.startswith("/users/")]


def _put(settings: ProvisionSettings, path: str, payload: dict[str, Any]) -> None:
    url = f"{settings.rabbitmq_management_url.rstrip('/')}/api{path}"
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="PUT")
    request.add_header("Content-Type", "application/json")
    admin = f"{settings.rabbitmq_user}:{settings.rabbitmq_password.get_secret_value()}"
    request.add_header("Authorization", f"Basic {base64.b64encode(admin.encode()).decode()}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise ProvisionError(f"PUT {path} -> {exc.code} {exc.read()[:200]!r}") from None
    except OSError as exc:
        raise ProvisionError(f"PUT {path}: {exc}") from None


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def main() -> int:
    settings = from_environment(ProvisionSettings, "messaging.provision")
    if settings is None:
        return 2
    try:
        done = provision(settings)
    except ProvisionError as exc:
        print(f"messaging.provision: {exc}", file=sys.stderr)
        return 1
    print(f"messaging.provision: {len(done)} steps on vhost {settings.rabbitmq_vhost!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
