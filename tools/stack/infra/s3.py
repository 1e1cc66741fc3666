"""S3 on loopback: moto's server, in memory (served by waitress, which keeps connections
open: tools/moto_server_keepalive.py). Start, readiness and the buckets."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

from ..components import check_port_free, failure, s3_component
from ..config import Config
from ..errors import StackError
from ..httpclient import answered
from ..procs import spawn, wait_until

S3_TIMEOUT = 60.0


def start_s3(config: Config) -> bool:
    """Start moto's server unless running; True if it was started."""
    component = s3_component(config)
    if component.pid() is not None:
        return False
    python = config.paths.venv_python
    if not python.exists():
        raise StackError(f"{python} missing: run `make venv`")
    port = config.s3_port
    check_port_free(component, "127.0.0.1", port)
    argv = [str(python), str(config.paths.moto_server), "-H", "127.0.0.1", "-p", str(port)]
    spawn(argv, os.environ, component.log_path, component.pid_path, cwd=config.paths.root)
    return True


def wait_s3(config: Config, timeout: float = S3_TIMEOUT) -> None:
    component = s3_component(config)
    url = config.s3_url.rstrip("/") + "/"
    try:
        wait_until(f"GET {url}", lambda: answered(url), timeout, alive=component.is_running)
    except StackError as exc:
        raise failure(component, str(exc)) from None


def s3_client(config: Config) -> Any:
    """A boto3 S3 client for the configured server (boto3 is imported lazily: the stack
    tool runs before the virtualenv exists)."""
    boto3 = importlib.import_module("boto3")
    botocore_config = importlib.import_module("botocore.config")
    return boto3.client(
        "s3",
        endpoint_url=config.s3_url,
        aws_access_key_id=config["S3_ACCESS_KEY"],
        aws_secret_access_key=config["S3_SECRET_KEY"],
        region_name=config.s3_region,
        config=botocore_config.Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3},
        ),
    )


def provision_s3(config: Config, buckets: Sequence[str] | None = None) -> None:
    """Create the buckets that do not exist yet."""
    names = list(buckets) if buckets is not None else config.s3_buckets
    client = s3_client(config)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    region = config.s3_region
    for name in names:
        if name in existing:
            continue
        try:
            if region == "us-east-1":
                client.create_bucket(Bucket=name)
            else:
                client.create_bucket(
                    Bucket=name, CreateBucketConfiguration={"LocationConstraint": region}
                )
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
