"""Faults 1 and 2: a worker killed with SIGKILL mid-batch (no shutdown, no acks, no
goodbye to the broker), then started again. Nothing it held may be lost or done twice."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import Mesh
from tests.faults.harness import Batch, kill_service

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]


@pytest.fixture
def mesh_overrides() -> dict[str, str]:
    # One pipeline at a time: the runner's calls queue up in front of imageproc. A backlog
    # in rpc.imageproc.run then means imageproc holds a request and the runner holds at
    # least two uploads (unacked, waiting for their replies): the moment to kill either.
    return {"IMAGEPROC_CONCURRENCY": "1"}


async def test_kill_imageproc_mid_batch(fault_mesh: Mesh, http: aiohttp.ClientSession) -> None:
    """The requests the dead imageproc held unacked go back to its queue and the new one
    answers them; a call whose answer comes too late (IMAGEPROC_TIMEOUT_SECONDS) fails
    with rpc_timeout and its upload is retried through the delay queues."""
    batch = Batch(fault_mesh, http)
    fault = kill_service(fault_mesh, "imageproc", busy="rpc.imageproc.run", notes=batch.notes)
    await batch.run(30, fault=fault)
    await batch.verify()
    print(batch.summary())


async def test_kill_runner_mid_batch(fault_mesh: Mesh, http: aiohttp.ClientSession) -> None:
    """The broker redelivers the uploads the dead runner held unacked; the new runner
    redoes them idempotently (same output key, same follow-up event ids)."""
    batch = Batch(fault_mesh, http)
    fault = kill_service(
        fault_mesh, "imageproc_runner", busy="rpc.imageproc.run", notes=batch.notes
    )
    await batch.run(30, fault=fault)
    await batch.verify()
    print(batch.summary())
