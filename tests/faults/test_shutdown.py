"""Fault 8: SIGTERM each service under load, one at a time.

Each service must stop taking new messages, finish (or hand back) what it holds, and exit
with code 0 within ~15 s (SHUTDOWN_TIMEOUT_SECONDS is 10); it is then started again.
No job may be lost, none done twice."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import SERVICES, Mesh
from tests.faults.harness import Batch, terminate_service

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

PER_SERVICE = 8
EXIT_WITHIN = 15.0


async def test_sigterm_each_service_under_load(
    fault_mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    batch = Batch(fault_mesh, http, timeout=85)
    exits: dict[str, int | None] = {}
    for name in ("imageproc", "imageproc_runner", "provenancedb", "upload"):
        assert name in SERVICES
        # Load: a few jobs accepted and in flight, more arriving while the service stops.
        await batch.submit(PER_SERVICE // 2)
        arriving = asyncio.create_task(batch.submit(PER_SERVICE // 2, interval=0.2))
        exits[name] = await terminate_service(fault_mesh, name, within=EXIT_WITHIN)
        await arriving
    await batch.submit(30 - len(batch.ids), interval=0.05)
    await batch.wait_terminal()
    await batch.verify()
    print(batch.summary())
    assert exits == dict.fromkeys(exits, 0), (
        f"exit codes after SIGTERM (None = still running after {EXIT_WITHIN:g} s): {exits}"
    )
