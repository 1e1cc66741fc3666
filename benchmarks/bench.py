"""`make bench`: imagemesh against raw pyvips and thumbor, side by side in one run.

    .venv/bin/python -m benchmarks.bench [--rounds 3] [--soak-minutes 20] [--quick]

1. Builds the corpus (`benchmarks.corpus`: 24 real photographs from two Debian packages,
   installed if missing, plus generated 12 and 24 MP JPEGs, the 24 MP one baseline and
   progressive).
2. Starts what it measures: a thumbor 7 server (its own virtualenv under `.bench/`) and
   the local stack (`tools/stack up`, restarted with the benchmark's settings: no
   upload rate limits), one replica of each service. A background thread samples the
   memory of every stack process group from then on (`stackprocs.RssSampler`).
3. Runs each job (`engines.JOBS`) through every engine at fixed concurrency levels,
   interleaved: every round runs every (engine, concurrency, job) once, in an order
   rotated from round to round, so that drift in the machine's speed spreads over all.
   Every imagemesh and raw pyvips input is unique (`benchmarks.unique`).
4. The repeated request (`benchmarks.repeat`): one file, then its identical bytes N times.
5. The soak (`benchmarks.soak`): open-loop mixed jobs at 80 % of the capacity measured in
   step 3, then the queues drained and the provenance audit (`soak.md`).
6. Scale-out: the stack again with IMAGEPROC_REPLICAS=2, the same jobs at concurrency 4.
7. Writes `benchmarks/results/bench.md`, `bench.json` and `bench.png` (`benchmarks.report`)
   and prints the report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import corpus, report, soakreport, stackprocs
from benchmarks.dither import dither_speedup
from benchmarks.engines import JOBS, JOBS_BY_NAME, Imagemesh, RawPool, Run, Thumbor, install_thumbor
from benchmarks.measure import Plan, Row, log, measure, mixed_capacity, score_quality, summarise
from benchmarks.repeat import measure_repeat
from benchmarks.soak import SoakRun, soak
from benchmarks.stackprocs import (
    RssSampler,
    group_roots,
    instance_peaks,
    process_groups,
    stack_down,
    stack_up,
    stack_upload_url,
)

__all__ = ["main", "stack_upload_url"]

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"
RESULTS = Path(__file__).resolve().parent / "results"
PROCESSES = os.cpu_count() or 1
CONCURRENCY = report.CONCURRENCY
SCALE_REPLICAS = report.SCALE_REPLICAS
REPEAT_JOB = "fit512"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def machine() -> str:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    system = f"{platform.system()} {platform.release()}"
    return f"{model or platform.processor()}, {PROCESSES} cores, {mem_kb / 2**20:.0f} GiB, {system}"


def quick_pick(pictures: Sequence[corpus.Picture]) -> list[corpus.Picture]:
    """A sixth of the corpus, always with the largest progressive JPEG (the memory case)."""
    picked = list(pictures[:: max(1, len(pictures) // 6)])
    large = max((p for p in pictures if p.progressive), key=lambda p: p.megapixels, default=None)
    if large is not None and large not in picked:
        picked.append(large)
    return picked


def prepare_corpus(quick: bool) -> tuple[Path, list[corpus.Picture]]:
    missing = corpus.missing_photos()
    if missing:
        log(f"installing {', '.join(corpus.PACKAGES)} ({len(missing)} photos missing)")
        stackprocs.apt_install(corpus.PACKAGES)
    folder = WORK / "corpus"
    pictures = corpus.build(folder)
    if quick:
        pictures = quick_pick(pictures)
    log(f"corpus: {len(pictures)} images in {folder}")
    return folder, pictures


async def measure_engines(
    folder: Path, names: Sequence[str], rounds: int, thumbor_command: Path
) -> list[Run]:
    """Step 3: every engine, job and concurrency, interleaved over the rounds."""
    thumbor = Thumbor(thumbor_command, folder, WORK, free_port(), PROCESSES)
    pools = {n: RawPool(folder, n) for n in sorted({1, PROCESSES})}
    try:
        await thumbor.wait_ready()
        for pool in pools.values():
            pool.warm()
        mesh = Imagemesh(stack_upload_url(), folder, process_groups, "imagemesh")
        thumbor_jobs = tuple(job for job in JOBS if job.thumbor)
        plans = [Plan(f"raw pyvips x{n}", n, JOBS, pool) for n, pool in pools.items()]
        plans += [Plan(f"thumbor x{PROCESSES}", c, thumbor_jobs, thumbor) for c in CONCURRENCY]
        plans += [Plan("imagemesh", c, JOBS, mesh) for c in CONCURRENCY]
        return await measure(plans, names, rounds)
    finally:
        thumbor.stop()
        for pool in pools.values():
            pool.close()


def imageproc_jobs(
    runs: Sequence[Run], repeat: dict[str, Any], soak_run: SoakRun | None, large: set[str]
) -> dict[str, int]:
    """Jobs that succeeded through the one imageproc (steps 3-5), and how many of them
    were on a 24 MP progressive JPEG (`large`)."""
    names = [r.name for run in runs if run.engine == "imagemesh" for r in run.results]
    # The first repeated request, and the repeats computed again (a reused one is not).
    first = 1 if repeat["after_202_ms"] or not repeat["failures"] else 0
    names += [repeat["file"]] * (first + len(repeat["after_202_ms"]) - repeat["reused"])
    if soak_run is not None:
        names += [job.file for job in soak_run.jobs if job.status == "succeeded"]
    return {"total": len(names), "large_progressive": sum(name in large for name in names)}


async def phase_one(
    args: argparse.Namespace, folder: Path, pictures: Sequence[corpus.Picture], thumbor: Path
) -> dict[str, Any]:
    """Steps 2-5 on one replica of each service, its memory sampled throughout."""
    names = [picture.name for picture in pictures]
    log("starting the local stack (tools/stack up, benchmark settings)")
    stack_up(1)
    sampler = RssSampler(group_roots()).start()
    try:
        runs = await measure_engines(folder, names, args.rounds, thumbor)
        # A middling photo: computing it again is clearly slower than reusing it.
        typical = sorted(pictures, key=lambda p: p.bytes)[len(pictures) // 2].name
        log(f"repeated request: {typical} then its bytes {args.repeats} times")
        repeat = await measure_repeat(
            stack_upload_url(),
            (folder / typical).read_bytes(),
            typical,
            REPEAT_JOB,
            JOBS_BY_NAME[REPEAT_JOB].pipeline,
            args.repeats,
        )
        soak_run = None
        if args.soak_minutes > 0:
            capacity = mixed_capacity(summarise(runs, {}), "imagemesh", max(CONCURRENCY))
            soak_run = await soak(
                stack_upload_url(), folder, names, capacity, args.soak_minutes, sampler
            )
    finally:
        sampler.stop()
    large = {p.name for p in pictures if p.progressive and p.megapixels >= 20}
    return {
        "runs": runs,
        "repeat": repeat.summary(),
        "soak_run": soak_run,
        "memory": {name: asdict(peaks) for name, peaks in sampler.peaks.items()},
        "peaks": instance_peaks(),
        "imageproc_jobs": imageproc_jobs(runs, repeat.summary(), soak_run, large),
    }


async def scale_out(args: argparse.Namespace, folder: Path, names: Sequence[str]) -> list[Run]:
    """Step 6: the same jobs at the highest concurrency with two replicas."""
    log(f"scale-out: IMAGEPROC_REPLICAS={SCALE_REPLICAS}")
    stack_up(SCALE_REPLICAS)
    label = f"imagemesh ({SCALE_REPLICAS} replicas)"
    scaled = Imagemesh(stack_upload_url(), folder, process_groups, label)
    return await measure([Plan(label, max(CONCURRENCY), JOBS, scaled)], names, args.rounds)


async def run_all(args: argparse.Namespace) -> int:
    import pyvips

    started = time.monotonic()
    folder, pictures = prepare_corpus(args.quick)
    names = [picture.name for picture in pictures]
    thumbor_command = install_thumbor(WORK / "thumbor")
    thumbor_version = command_output([str(thumbor_command), "--version"])
    one = await phase_one(args, folder, pictures, thumbor_command)
    peaks = dict(one["peaks"])
    scale_runs: list[Run] = []
    if not args.no_scale:
        scale_runs = await scale_out(args, folder, names)
        peaks |= {f"{name} (replicas run)": mb for name, mb in instance_peaks().items()}
    if not args.keep_stack:
        stack_down()
    log("quality (SSIM against full-resolution Lanczos references)")
    ssims = score_quality(one["runs"], folder)
    log("dither against the pure-Python loop")
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    soak_summary = soakreport.summarise(one["soak_run"]) if one["soak_run"] else None
    facts = {
        "date": date,
        "machine": machine(),
        "processes": PROCESSES,
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "thumbor": thumbor_version.removeprefix("Thumbor ").split(" ")[0] or "?",
        "rounds": args.rounds,
        "peaks": peaks,
        "memory": one["memory"],
        "imageproc_jobs": one["imageproc_jobs"],
        "repeat": one["repeat"],
        "soak": soak_summary,
        "dither": dither_speedup([folder / name for name in names[:3]]),
    }
    out = Path(args.out)
    if one["soak_run"] is not None and soak_summary is not None:
        soakreport.write(one["soak_run"], soak_summary, out, date)
    rows, scale_rows = summarise(one["runs"], ssims), summarise(scale_runs, ssims)
    facts["seconds"] = round(time.monotonic() - started)
    return write_results(out, rows, scale_rows, pictures, facts)


def write_results(
    out: Path,
    rows: Sequence[Row],
    scale_rows: Sequence[Row],
    pictures: Sequence[corpus.Picture],
    facts: dict[str, Any],
) -> int:
    """bench.md, bench.json, bench.png; the report printed. 1 if any request failed."""
    lines, targets = report.report(rows, scale_rows, pictures, facts)
    lines += ["", f"The whole run took {facts['seconds']} s."]
    write(out / "bench.md", "\n".join(lines) + "\n")
    document = {
        "facts": facts,
        "rows": [asdict(row) for row in rows],
        "scale": [asdict(row) for row in scale_rows],
        "corpus": [asdict(p) for p in pictures],
        "targets": [{"target": n, "met": ok, "measured": d} for n, ok, d in targets],
    }
    write(out / "bench.json", json.dumps(document, indent=1, default=str) + "\n")
    report.chart(rows, scale_rows, out / "bench.png")
    print("\n".join(lines))
    failed = sum(row.failures for row in [*rows, *scale_rows])
    if failed:
        log(f"{failed} requests failed (see the 'failed' columns)")
    return 1 if failed else 0


def command_output(argv: Sequence[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Options; --quick changes the defaults of the others (1 round, a 1-minute soak, 5
    repeats) unless they are given."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    parser.add_argument("--rounds", type=int, help="rounds of every run (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="a try-out: a sixth of the corpus, 1 round, 1 min soak"
    )
    parser.add_argument(
        "--soak-minutes", type=float, help="the soak's length (default 20; 0 skips it)"
    )
    parser.add_argument("--repeats", type=int, help="repeated requests (default 20)")
    parser.add_argument("--no-scale", action="store_true", help="skip the replicas run")
    parser.add_argument("--keep-stack", action="store_true", help="leave the services running")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    defaults = {"rounds": (3, 1), "soak_minutes": (20.0, 1.0), "repeats": (20, 5)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run_all(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
