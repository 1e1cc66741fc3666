"""Faults 3, 4 and 5: the infrastructure goes away mid-batch and comes back.

These restart or freeze the SHARED local-stack servers (tools/stack): fine within one
pytest process, whose tests run one at a time; each fault undoes itself in `finally`.
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import Mesh
from tests.faults.harness import Batch, couch_outage, restart_rabbitmq, s3_freeze

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

OUTAGE_SECONDS = 30.0


async def test_rabbitmq_restart_mid_batch(
    fault_mesh: Mesh, http: aiohttp.ClientSession, stack_config: dict[str, str]
) -> None:
    """The broker stops and starts again. The services reconnect on their own (robust
    connection, topology re-declared, consumers restored); quorum queues keep the
    persistent messages; lost RPC requests time out and are retried; the client's POSTs
    and GETs meet 503s meanwhile and retry."""
    batch = Batch(fault_mesh, http, timeout=85)
    await batch.run(30, fault=restart_rabbitmq(stack_config))
    await batch.verify()
    print(batch.summary())


async def test_couchdb_down_30s_mid_batch(
    fault_mesh: Mesh, http: aiohttp.ClientSession, stack_config: dict[str, str]
) -> None:
    """The CouchDB-compatible server is stopped for 30 s. New jobs are refused with 503
    (the job must be recorded before 202) and the client retries; provenance events of
    jobs in flight wait in provenancedb's queue (retried with back-off) and all land once
    the server is back: one document per event, none lost."""
    batch = Batch(fault_mesh, http, timeout=85)
    await batch.run(30, fault=couch_outage(stack_config, OUTAGE_SECONDS))
    await batch.verify()
    print(batch.summary())


async def test_s3_unresponsive_30s_mid_batch(
    fault_mesh: Mesh, http: aiohttp.ClientSession, stack_config: dict[str, str]
) -> None:
    """S3 unavailable for 30 s. moto keeps every object in memory only, so killing it would
    lose them all: it is frozen instead (SIGSTOP, then SIGCONT after 30 s). An unresponsive
    S3 is the harder case: the kernel still accepts connections, so requests are not
    refused but hang until S3_TIMEOUT_SECONDS; uploads answer 503 and the client retries,
    the runner's gets and puts time out and go through the delay queues."""
    batch = Batch(fault_mesh, http, timeout=85)
    await batch.run(30, fault=s3_freeze(stack_config, OUTAGE_SECONDS))
    await batch.verify()
    print(batch.summary())
