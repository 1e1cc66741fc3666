"""The local stack's S3 server (tools/moto_server_keepalive.py) keeps object bodies in
files, not in memory (moto held 4.4 GB after a 20-minute soak), and without a descriptor
open per object (a spooled temporary file keeps one: a few thousand jobs would reach the
limit)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.waiting import wait_for

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "moto_server_keepalive.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("moto_server_keepalive", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


keepalive = _module()


def test_a_small_body_stays_in_memory_a_large_one_goes_to_a_file(tmp_path: Path) -> None:
    keepalive.SpillFile.folder = tmp_path
    small, large = keepalive.SpillFile(16), keepalive.SpillFile(16)
    small.write(b"x" * 16)
    large.write(b"y" * 17)
    assert not small.spilled
    assert large.spilled
    assert len(list(tmp_path.iterdir())) == 1
    large.seek(0)
    assert large.read(10) + large.read() == b"y" * 17  # in chunks, as moto's etag reads
    assert large.read() == b""
    large.seek(0)
    large.truncate()  # moto replaces a body whole
    large.write(b"z")
    large.seek(0)
    assert (large.read(), large.spilled) == (b"z", False)
    assert list(tmp_path.iterdir()) == []
    large.write(b"w" * 40)
    large.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="closed"):
        large.read()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", None)
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "-p", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            urllib.request.urlopen(url + "/", timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait_for(answers, timeout=30)
        yield url, proc, tmp_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _client(url: str) -> Any:
    boto3 = importlib.import_module("boto3")  # untyped: as tools/stack's s3_client
    botocore_config = importlib.import_module("botocore.config")
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=botocore_config.Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def _spilled(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def test_the_server_keeps_bodies_in_files_without_a_descriptor_each(
    server: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    url, proc, folder = server
    s3 = _client(url)
    s3.create_bucket(Bucket="bodies")
    descriptors = len(os.listdir(f"/proc/{proc.pid}/fd"))
    large = os.urandom(100_000)
    for n in range(50):
        s3.put_object(Bucket="bodies", Key=f"large-{n}", Body=large)
    s3.put_object(Bucket="bodies", Key="small", Body=b"{}")
    assert _spilled(folder) == 50  # the small one stays in memory
    assert len(os.listdir(f"/proc/{proc.pid}/fd")) <= descriptors + 2
    assert s3.get_object(Bucket="bodies", Key="large-7")["Body"].read() == large
    assert s3.head_object(Bucket="bodies", Key="large-7")["ContentLength"] == len(large)
    s3.copy_object(Bucket="bodies", Key="copy", CopySource={"Bucket": "bodies", "Key": "large-7"})
    assert s3.get_object(Bucket="bodies", Key="copy")["Body"].read() == large
    s3.delete_object(Bucket="bodies", Key="large-0")
    s3.put_object(Bucket="bodies", Key="large-1", Body=b"now small")
    assert s3.get_object(Bucket="bodies", Key="large-1")["Body"].read() == b"now small"
    assert _spilled(folder) == 49  # one copied, one deleted, one replaced by a small body

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert _spilled(folder) == 0  # its files go with it
