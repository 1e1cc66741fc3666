"""An image's lineage across jobs, from documents of real events on the real server.

Images are entities by content: job B re-uploading job A's output uses the very image A
made, which is all that links the two jobs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from messaging import RpcMessage, topology
from messaging.events import ImageRef
from messaging.rpc import rpc_handler
from provenancedb.app import Recorder
from provenancedb.lineage import image_lineage
from provenancedb.store import ProvenanceStore
from tests.provenancedb.conftest import OpenStore
from tests.provenancedb.test_documents import (
    documents,
    input_ref,
    job_trail,
    output_ref,
    reuploaded,
    sha,
)

pytestmark = pytest.mark.integration


def _job(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"imagemesh-test/lineage/{name}"))


A, B, C, D = _job("a"), _job("b"), _job("c"), _job("d")
SELF, P_TO_Q, Q_TO_P = _job("self"), _job("p-to-q"), _job("q-to-p")
G, H = _job("g"), _job("h")
IN0, OUT1, OUT2, OUT3, OUT4 = (sha(f"lineage/{name}") for name in ("in0", "1", "2", "3", "4"))
SAME, P, Q = sha("lineage/same"), sha("lineage/p"), sha("lineage/q")
R0, R0B, R1 = sha("lineage/r0"), sha("lineage/r0b"), sha("lineage/r1")
T0 = datetime(2026, 3, 14, 9, 26, 53, 589_000, tzinfo=UTC)
PNG = {"format": "png", "width": 320, "height": 240, "bytes": 20_480}


@pytest.fixture
async def store(writer_store: OpenStore) -> AsyncIterator[ProvenanceStore]:
    async with writer_store("lineage-test") as opened:
        yield opened


def _output(job_id: str, digest: str) -> ImageRef:
    return output_ref(job_id, digest)


def _input_location(digest: str, ext: str = "png") -> str:
    return f"s3://imagemesh-input/sha256/{digest}.{ext}"


def _output_location(job_id: str) -> str:
    return f"s3://imagemesh-output/{job_id}/output.png"


@pytest.fixture
async def graph(store: ProvenanceStore) -> ProvenanceStore:
    """A: in0 -> out1, B: out1 -> out2, C: out2 -> out3, D: out1 -> out4 (a branch);
    SELF: same -> same (an image derived from itself); P_TO_Q and Q_TO_P: p -> q -> p;
    G: r0 -> r1 and H: r0b -> r1 (one output made by two jobs)."""
    out1, out2 = _output(A, OUT1), _output(B, OUT2)
    same = _output(SELF, SAME)
    p, q = _output(Q_TO_P, P), _output(P_TO_Q, Q)
    jobs = [
        (A, input_ref(IN0), out1),
        (B, reuploaded(out1), out2),
        (C, reuploaded(out2), _output(C, OUT3)),
        (D, reuploaded(out1), _output(D, OUT4)),
        (SELF, reuploaded(same), same),
        (P_TO_Q, reuploaded(p), q),
        (Q_TO_P, reuploaded(q), p),
        (G, input_ref(R0), _output(G, R1)),
        (H, input_ref(R0B, fmt="webp"), _output(H, R1)),
    ]
    docs = [
        doc
        for n, (job_id, source, output) in enumerate(jobs)
        for doc in documents(job_trail(job_id, source, output, T0 + timedelta(minutes=n)))
    ]
    assert await store.record_all(docs) == [True] * len(docs)
    return store


def _by_depth(links: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return sorted((link["depth"], link["sha256"], link["job_id"]) for link in links)


async def test_lineage_of_a_middle_generation(graph: ProvenanceStore) -> None:
    lineage = await image_lineage(graph, OUT2)
    assert lineage is not None
    assert lineage["image"] == {
        "sha256": OUT2,
        **PNG,
        "locations": [_input_location(OUT2), _output_location(B)],
    }
    assert lineage["produced_by"] == [B]
    assert lineage["used_by"] == [C]
    assert lineage["ancestors"] == [
        {"sha256": OUT1, "depth": 1, "job_id": B, "derived": OUT2},
        {"sha256": IN0, "depth": 2, "job_id": A, "derived": OUT1},
    ]
    assert lineage["descendants"] == [{"sha256": OUT3, "depth": 1, "job_id": C, "source": OUT2}]


async def test_lineage_of_an_original_upload_reaches_every_generation(
    graph: ProvenanceStore,
) -> None:
    lineage = await image_lineage(graph, IN0)
    assert lineage is not None
    assert lineage["image"] == {
        "sha256": IN0,
        "format": "jpeg",
        "width": 640,
        "height": 480,
        "bytes": 48_213,
        "locations": [_input_location(IN0, "jpeg")],
    }
    assert lineage["produced_by"] == []
    assert lineage["used_by"] == [A]
    assert lineage["ancestors"] == []
    descendants = lineage["descendants"]
    assert _by_depth(descendants) == sorted(
        [(1, OUT1, A), (2, OUT2, B), (2, OUT4, D), (3, OUT3, C)]
    )
    # Breadth first: no generation before the one it was made from.
    assert [link["depth"] for link in descendants] == [1, 2, 2, 3]
    sources = {link["sha256"]: link["source"] for link in descendants}
    assert sources == {OUT1: IN0, OUT2: OUT1, OUT4: OUT1, OUT3: OUT2}


async def test_lineage_of_a_branching_image(graph: ProvenanceStore) -> None:
    lineage = await image_lineage(graph, OUT1)
    assert lineage is not None
    # Stored once as A's output and once (same key: content-addressed) for B and D.
    assert lineage["image"]["locations"] == [_input_location(OUT1), _output_location(A)]
    assert lineage["produced_by"] == [A]
    assert lineage["used_by"] == sorted([B, D])
    assert lineage["ancestors"] == [{"sha256": IN0, "depth": 1, "job_id": A, "derived": OUT1}]
    assert _by_depth(lineage["descendants"]) == sorted([(1, OUT2, B), (1, OUT4, D), (2, OUT3, C)])


async def test_lineage_of_a_last_generation(graph: ProvenanceStore) -> None:
    lineage = await image_lineage(graph, OUT3)
    assert lineage is not None
    assert lineage["image"]["locations"] == [_output_location(C)]
    assert lineage["produced_by"] == [C]
    assert lineage["used_by"] == []
    assert _by_depth(lineage["ancestors"]) == [(1, OUT2, C), (2, OUT1, B), (3, IN0, A)]
    assert lineage["descendants"] == []


async def test_an_output_made_by_two_jobs_names_both(graph: ProvenanceStore) -> None:
    lineage = await image_lineage(graph, R1)
    assert lineage is not None
    assert lineage["produced_by"] == sorted([G, H])
    assert lineage["used_by"] == []
    assert _by_depth(lineage["ancestors"]) == sorted([(1, R0, G), (1, R0B, H)])
    assert lineage["image"]["locations"] == sorted([_output_location(G), _output_location(H)])


async def test_an_image_derived_from_itself_does_not_loop(graph: ProvenanceStore) -> None:
    lineage = await image_lineage(graph, SAME)
    assert lineage is not None
    assert lineage["produced_by"] == [SELF]
    assert lineage["used_by"] == [SELF]
    assert lineage["ancestors"] == [{"sha256": SAME, "depth": 1, "job_id": SELF, "derived": SAME}]
    assert lineage["descendants"] == [{"sha256": SAME, "depth": 1, "job_id": SELF, "source": SAME}]


async def test_a_two_job_cycle_is_walked_once(graph: ProvenanceStore) -> None:
    lineage = await image_lineage(graph, P)
    assert lineage is not None
    assert lineage["produced_by"] == [Q_TO_P]
    assert lineage["used_by"] == [P_TO_Q]
    assert lineage["descendants"] == [
        {"sha256": Q, "depth": 1, "job_id": P_TO_Q, "source": P},
        {"sha256": P, "depth": 2, "job_id": Q_TO_P, "source": Q},
    ]
    assert lineage["ancestors"] == [
        {"sha256": Q, "depth": 1, "job_id": Q_TO_P, "derived": P},
        {"sha256": P, "depth": 2, "job_id": P_TO_Q, "derived": Q},
    ]


async def test_an_unknown_image_has_no_lineage(graph: ProvenanceStore) -> None:
    assert await image_lineage(graph, sha("lineage/never seen")) is None


async def test_an_image_only_uploaded_has_a_lineage_of_its_own(store: ProvenanceStore) -> None:
    job = _job("queued")
    trail = job_trail(job, input_ref(IN0), _output(job, OUT1), T0)[:2]  # intake only
    assert await store.record_all(documents(trail)) == [True, True]
    lineage = await image_lineage(store, IN0)
    assert lineage == {
        "image": {
            "sha256": IN0,
            "format": "jpeg",
            "width": 640,
            "height": 480,
            "bytes": 48_213,
            "locations": [_input_location(IN0, "jpeg")],
        },
        "produced_by": [],
        "used_by": [job],
        "ancestors": [],
        "descendants": [],
    }
    assert await image_lineage(store, OUT1) is None


# --------------------------------------------------------------------------- per owner

ALICE, BOB = "alice@example.org", "bob"
OWNED_A, OWNED_B, OWNED_C = _job("owned-a"), _job("owned-b"), _job("owned-c")


@pytest.fixture
async def two_owners(store: ProvenanceStore) -> ProvenanceStore:
    """Alice's A: in0 -> out1; Bob's B: out1 (re-uploaded) -> out2; Alice's C: out2 -> out3."""
    out1, out2 = _output(OWNED_A, OUT1), _output(OWNED_B, OUT2)
    jobs = [
        (OWNED_A, input_ref(IN0), out1, ALICE),
        (OWNED_B, reuploaded(out1), out2, BOB),
        (OWNED_C, reuploaded(out2), _output(OWNED_C, OUT3), ALICE),
    ]
    for n, (job_id, source, output, owner) in enumerate(jobs):
        trail = job_trail(job_id, source, output, T0 + timedelta(minutes=n), principal=owner)
        await store.record_all(documents(trail))
    return store


async def test_an_owners_lineage_shows_only_its_own_jobs(two_owners: ProvenanceStore) -> None:
    alice = await image_lineage(two_owners, OUT1, owner=ALICE)
    assert alice is not None
    assert alice["produced_by"] == [OWNED_A]
    assert alice["used_by"] == []  # Bob re-uploaded it: not Alice's to see
    assert alice["descendants"] == []
    assert alice["image"]["locations"] == [_output_location(OWNED_A)]
    bob = await image_lineage(two_owners, OUT1, owner=BOB)
    assert bob is not None
    assert (bob["used_by"], bob["produced_by"], bob["ancestors"]) == ([OWNED_B], [], [])
    assert bob["image"]["locations"] == [_input_location(OUT1)]
    assert _by_depth(bob["descendants"]) == [(1, OUT2, OWNED_B)]
    # Everyone's (an auditor): both owners' jobs, the whole chain.
    everyone = await image_lineage(two_owners, OUT1)
    assert everyone is not None
    assert everyone["used_by"] == [OWNED_B]
    assert _by_depth(everyone["descendants"]) == [(1, OUT2, OWNED_B), (2, OUT3, OWNED_C)]


async def test_an_owners_lineage_is_walked_through_its_own_jobs_only(
    two_owners: ProvenanceStore,
) -> None:
    # out3 descends from in0 through Bob's job: Alice sees only the link her job C made.
    alice = await image_lineage(two_owners, OUT3, owner=ALICE)
    assert alice is not None
    assert _by_depth(alice["ancestors"]) == [(1, OUT2, OWNED_C)]
    everyone = await image_lineage(two_owners, OUT3)
    assert everyone is not None
    assert _by_depth(everyone["ancestors"]) == [
        (1, OUT2, OWNED_C),
        (2, OUT1, OWNED_B),
        (3, IN0, OWNED_A),
    ]


async def test_an_image_none_of_the_owners_jobs_touched_is_not_found(
    two_owners: ProvenanceStore,
) -> None:
    assert await image_lineage(two_owners, OUT3, owner=BOB) is None
    assert await image_lineage(two_owners, IN0, owner=BOB) is None
    assert await image_lineage(two_owners, OUT3, owner="carol") is None
    recorder = Recorder(two_owners)
    answer = await rpc_handler(topology.PROVENANCE_LINEAGE, recorder.on_lineage_request)(
        RpcMessage({"sha256": OUT3, "owner": BOB})
    )
    assert answer.meta == {"found": False, "lineage": None}
    answer = await rpc_handler(topology.PROVENANCE_LINEAGE, recorder.on_lineage_request)(
        RpcMessage({"sha256": OUT3, "owner": ALICE})
    )
    assert answer.meta["found"] is True
    answer = await rpc_handler(topology.PROVENANCE_LINEAGE, recorder.on_lineage_request)(
        RpcMessage({"sha256": OUT3})
    )
    assert answer.meta["found"] is True
