"""A small HTTP client (urllib): the stack probes and provisions its servers with it
before any virtualenv exists."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .procs import wait_until


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


def http(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    auth: tuple[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    accept: str = "application/json",
    timeout: float = 5.0,
) -> HttpAnswer:
    """One HTTP request; any status is an answer, connection failures raise OSError.

    JSON is asked for by default: PouchDB Server answers text/plain otherwise.
    """
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Accept", accept)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpAnswer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, exc.read(), dict(exc.headers))


def http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        return http("GET", url, auth=auth, accept="*/*", timeout=2.0).status == 200
    except OSError:
        return False


def wait_http_ok(
    url: str,
    timeout: float,
    *,
    auth: tuple[str, str] | None = None,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Wait until `GET url` answers 200."""
    wait_until(f"GET {url}", lambda: http_ok(url, auth), timeout, alive=alive)


def answered(url: str) -> bool:
    try:
        http("GET", url, accept="*/*", timeout=2.0)
    except OSError:
        return False
    return True
