"""The local stand-ins' floor: what S3 and CouchDB cost per job before the mesh does anything.

`python -m benchmarks.floor` (the local stack's infrastructure running: `make infra` or
`make up`) measures, on the benchmark's corpus, the CPU that moto (the S3 server) and
PouchDB Server (the CouchDB-compatible server) spend on the fewest requests any fit512 job
needs, made straight to them with the services' own S3 client settings:

- S3: the input put and read back once, the output put and read back once (the download);
- CouchDB: the four provenance events of a successful job (one document each, 3 KB, as
  ARCHITECTURE.md's provenance documents are), written in `_bulk_docs` batches of
  `BATCH_JOBS` jobs, as provenancedb's group commit writes them at concurrency 4.

Beside them it measures raw pyvips' CPU per fit512 job on the same files (in this
process, one libvips thread: the work `make bench` compares the mesh with). The two bound
what `make bench` can show on this machine, where the stand-ins share the two cores with
the work: the overhead target (non-imageproc CPU <= 50 ms per job) has at most
50 - floor left for the mesh's own services and RabbitMQ, and at concurrency 4 (the cores
saturated) end-to-end throughput is at most raw / (raw + floor) of raw pyvips', even if
the mesh's services and RabbitMQ cost nothing and imageproc were as cheap as raw pyvips.

Writes `benchmarks/results/floor.md` (`--out DIR`) and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import bench, stackprocs
from benchmarks.engines import raw_pipeline
from benchmarks.procfs import cpu_of
from benchmarks.unique import unique_bytes
from objectstore import S3Settings, open_store

RESULTS = Path(__file__).resolve().parent / "results"
EVENTS_PER_JOB = 4
"""A successful job's provenance: uploaded, processing started, processed, succeeded."""
EVENT_BYTES = 3000
BATCH_JOBS = 4
"""Jobs per `_bulk_docs` request: provenancedb's group commit at concurrency 4."""
JPEG = "image/jpeg"
OVERHEAD_TARGET_MS = 50.0
THROUGHPUT_TARGET = 0.7


def _group_cpu(group: str) -> float:
    return cpu_of({group: stackprocs.process_groups().get(group, [])})[group]


async def s3_floor(folder: Path, names: Sequence[str], outputs: dict[str, bytes]) -> float:
    """moto's CPU-seconds per job for input put + get and output put + get."""
    setting = stackprocs.stack_setting
    settings = S3Settings(
        s3_url=setting("S3_URL"),
        s3_access_key=setting("S3_ACCESS_KEY"),
        s3_secret_key=setting("S3_SECRET_KEY"),
    )
    run = uuid.uuid4().hex[:12]
    async with open_store(settings) as store:
        before = _group_cpu("s3")
        for index, name in enumerate(names):
            key = f"floor-{run}/{index}"
            data = unique_bytes(_read(folder, name))
            await store.put(settings.s3_input_bucket, key, data, content_type=JPEG)
            await store.get(settings.s3_input_bucket, key)
            await store.put(settings.s3_output_bucket, key, outputs[name], content_type=JPEG)
            await store.get(settings.s3_output_bucket, key)
        spent = _group_cpu("s3") - before
        for index in range(len(names)):
            for bucket in (settings.s3_input_bucket, settings.s3_output_bucket):
                await store.delete(bucket, f"floor-{run}/{index}")
    return spent / len(names)


async def couchdb_floor(jobs: int) -> float:
    """PouchDB Server's CPU-seconds per job for its four event documents."""
    setting = stackprocs.stack_setting
    user = f"{setting('COUCHDB_ADMIN_USER')}:{setting('COUCHDB_ADMIN_PASSWORD')}"
    headers = {"Authorization": "Basic " + base64.b64encode(user.encode()).decode()}
    database = f"{setting('COUCHDB_URL')}/floor-{uuid.uuid4().hex[:12]}"
    async with aiohttp.ClientSession(headers=headers, raise_for_status=True) as session:
        await (await session.put(database)).read()
        try:
            before = _group_cpu("couchdb")
            for _ in range(0, jobs, BATCH_JOBS):
                docs = [_event(job) for job in range(BATCH_JOBS) for _ in range(EVENTS_PER_JOB)]
                async with session.post(f"{database}/_bulk_docs", json={"docs": docs}) as answer:
                    await answer.read()
            return (_group_cpu("couchdb") - before) / (jobs // BATCH_JOBS * BATCH_JOBS)
        finally:
            await (await session.delete(database)).read()


def _event(job: int) -> dict[str, Any]:
    event = {"_id": str(uuid.uuid4()), "kind": "event", "job": f"job-{job}", "detail": ""}
    event["detail"] = "x" * max(0, EVENT_BYTES - len(json.dumps(event)))
    return event


def raw_cpu(folder: Path, names: Sequence[str]) -> tuple[float, dict[str, bytes]]:
    """Raw pyvips' CPU-seconds per fit512 job (median of 3 passes), and each output."""
    import pyvips

    from pipeline import harden_vips

    harden_vips()  # as imageproc's workers and `make bench`'s raw pyvips
    pyvips.concurrency_set(1)
    outputs = {name: raw_pipeline("fit512", _read(folder, name)) for name in names}
    passes = []
    for _ in range(3):
        started = time.process_time()
        for name in names:
            raw_pipeline("fit512", unique_bytes(_read(folder, name)))
        passes.append((time.process_time() - started) / len(names))
    return statistics.median(passes), outputs


def _read(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes()


def report(s3: float, couchdb: float, raw: float, names: Sequence[str], folder: Path) -> str:
    floor = s3 + couchdb
    sizes = [(folder / name).stat().st_size for name in names]
    ceiling = raw / (raw + floor)
    allowed = raw * (1 / THROUGHPUT_TARGET - 1)
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return "\n".join(
        [
            "# The local stand-ins' floor per fit512 job",
            "",
            f"Generated by `python -m benchmarks.floor` on {now}.",
            f"Machine: {bench.machine()}. {len(names)} jobs over the benchmark corpus"
            f" (inputs: median {statistics.median(sizes) / 2**20:.2f} MB,"
            f" mean {statistics.mean(sizes) / 2**20:.2f} MB). See the module's docstring.",
            "",
            "| | requests per job | CPU ms per job |",
            "|---|---|---|",
            f"| S3 server (moto) | input put + get, output put + get | {1000 * s3:.1f} |",
            f"| CouchDB-compatible server (PouchDB Server) | {EVENTS_PER_JOB} event documents"
            f" in `_bulk_docs` of {BATCH_JOBS} jobs | {1000 * couchdb:.1f} |",
            f"| **the stand-ins' floor** | | **{1000 * floor:.1f}** |",
            f"| raw pyvips (the work, for comparison) | | {1000 * raw:.1f} |",
            "",
            f"- Overhead target ({OVERHEAD_TARGET_MS:.0f} ms): at most"
            f" {OVERHEAD_TARGET_MS - 1000 * floor:.1f} ms per job left for upload, the"
            " runner, provenancedb and RabbitMQ together.",
            f"- Throughput target ({THROUGHPUT_TARGET}x raw pyvips at concurrency 4, the"
            f" cores saturated): all the mesh's CPU beyond raw pyvips' work must stay within"
            f" {1000 * allowed:.1f} ms per job; the stand-ins take {1000 * floor:.1f}, leaving"
            f" {1000 * (allowed - floor):.1f} ms for upload, the runner, provenancedb,"
            " RabbitMQ and imageproc's own cost beyond raw pyvips'. With nothing but the"
            f" stand-ins, throughput could reach {ceiling:.2f}x.",
            "",
        ]
    )


async def run(args: argparse.Namespace) -> str:
    folder, pictures = bench.prepare_corpus(quick=False)
    names = [picture.name for picture in pictures] * args.passes
    raw, outputs = raw_cpu(folder, names[: len(pictures)])
    s3 = await s3_floor(folder, names, outputs)
    couchdb = await couchdb_floor(len(names))
    return report(s3, couchdb, raw, names, folder)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=3, help="passes over the corpus")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    text = asyncio.run(run(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "floor.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
