"""`make bench`: imagemesh against raw pyvips and thumbor, side by side in one run.

    .venv/bin/python -m benchmarks.bench [--rounds 3] [--quick]

1. Builds the corpus (`benchmarks.corpus`: 24 real photographs from two Debian packages,
   installed if missing, plus generated 12 and 24 MP JPEGs).
2. Starts what it measures: a thumbor 7 server (its own virtualenv under `.bench/`) and
   the local stack (`tools/stack.py up`, restarted with the benchmark's settings: no
   upload rate limits).
3. Runs each job (`engines.JOBS`) through every engine at fixed concurrency levels,
   interleaved: every round runs every (engine, concurrency, job) once, in an order
   rotated from round to round, so that drift in the machine's speed spreads over all.
4. Scale-out: the stack again with IMAGEPROC_REPLICAS=2, the same jobs at the highest
   concurrency.
5. Writes `benchmarks/results/bench.md`, `bench.json` and `bench.png` and prints the table.

Throughput is a run's images / wall time (median over rounds); latencies are pooled over
all rounds; CPU-seconds per image are summed over all rounds from /proc; quality is SSIM
against a full-resolution Lanczos reference (`benchmarks.quality`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import corpus, quality
from benchmarks.engines import (
    JOBS,
    JOBS_BY_NAME,
    Engine,
    Imagemesh,
    Job,
    RawPool,
    Run,
    Thumbor,
    children,
    dither_speedup,
    install_thumbor,
    peak_rss_mb,
)

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(ROOT / "tools"))
import stack  # noqa: E402  (tools/stack.py: the local stack)

CONCURRENCY = (1, 2, 4)
PROCESSES = os.cpu_count() or 1
SCALE_REPLICAS = 2
#: The benchmark's stack: the upload rate limits would refuse a benchmark's burst.
STACK_SETTINGS = {
    "UPLOAD_RATE_LIMIT_PER_MINUTE": "0",
    "UPLOAD_API_RATE_LIMIT_PER_MINUTE": "0",
}
SERVICES = ("upload", "imageproc_runner", "imageproc", "provenancedb")
INFRA = ("rabbitmq", "couchdb", "s3")

# Targets (issue 8), on this machine.
TARGET_E2E_OVER_RAW = 0.7
TARGET_OVERHEAD_MS = 40.0
TARGET_RSS_MB = 200.0
TARGET_RSS_IMAGES = 500
TARGET_DITHER_SPEEDUP = 20.0


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --- the stack -----------------------------------------------------------------------


def stack_up(replicas: int) -> None:
    """(Re)start the local stack's services with the benchmark's settings (the
    infrastructure keeps running, or is started)."""
    with stack.stack_lock():
        # Services started with other settings (a `make up`) would keep running otherwise.
        stack.stop_services(stack.load_config())
    env = {**os.environ, **STACK_SETTINGS, "IMAGEPROC_REPLICAS": str(replicas)}
    env.pop("RUNNER_REPLICAS", None)
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "tools" / "stack.py"), "up"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def stack_down() -> None:
    """Stop the services the benchmark started (not the infrastructure)."""
    with stack.stack_lock():
        stack.stop_services(stack.load_config())


def process_groups() -> dict[str, list[int]]:
    """The stack's processes by service (replicas together) and infrastructure server."""
    config = stack.load_config()
    groups: dict[str, list[int]] = defaultdict(list)
    for name in stack.known_instances(config):
        supervisor = stack.service_component(name).pid()
        if supervisor is not None:
            groups[stack.service_of(name)] += children(supervisor)
    for component in stack.infra_components(config):
        pid = component.pid()
        if pid is not None and component.name in INFRA:
            groups[component.name] += [pid, *children(pid)]
    return dict(groups)


def service_peaks() -> dict[str, float]:
    """Peak RSS (MB) of each service process, by instance."""
    config = stack.load_config()
    peaks: dict[str, float] = {}
    for name in stack.known_instances(config):
        supervisor = stack.service_component(name).pid()
        if supervisor is not None:
            peaks[name] = max((peak_rss_mb(pid) for pid in children(supervisor)), default=0.0)
    return peaks


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- measuring ---------------------------------------------------------------------------


@dataclass
class Plan:
    """One (engine, concurrency) to run each job with, every round."""

    label: str
    concurrency: int
    jobs: tuple[Job, ...]
    engine: Engine


def rounds_in_order(plans: Sequence[Plan], round_number: int) -> list[tuple[Plan, Job]]:
    pairs = [(plan, job) for plan in plans for job in plan.jobs]
    shift = (round_number * len(pairs)) // 3 % len(pairs) if pairs else 0
    ordered = pairs[shift:] + pairs[:shift]
    return ordered if round_number % 2 == 0 else ordered[::-1]


async def measure(plans: Sequence[Plan], names: Sequence[str], rounds: int) -> list[Run]:
    runs: list[Run] = []
    for number in range(rounds):
        for plan, job in rounds_in_order(plans, number):
            keep = number == 0  # outputs for quality, from the first round
            run = await plan.engine.run(job, names, plan.concurrency, keep)
            run.engine = plan.label
            runs.append(run)
            log(
                f"round {number + 1}/{rounds} {plan.label:<22} c={plan.concurrency} "
                f"{job.name:<9} {len(run.results) / run.wall:6.2f} img/s"
                + (f"  {len(run.failures)} failed: {run.failures[0]}" if run.failures else "")
            )
    return runs


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Row:
    engine: str
    concurrency: int
    job: str
    rounds: int
    images: int
    failures: int
    throughput: float  # median over rounds, images/s
    spread: float  # (max - min) / median throughput over rounds
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_per_image: dict[str, float]
    output_kb: float
    ssim: float | None


def summarise(runs: Sequence[Run], ssims: dict[tuple[str, str], float]) -> list[Row]:
    grouped: dict[tuple[str, int, str], list[Run]] = defaultdict(list)
    for run in runs:
        grouped[(run.engine, run.concurrency, run.job)].append(run)
    rows = []
    for (engine, concurrency, job), group in grouped.items():
        rates = [len(run.results) / run.wall for run in group if run.wall > 0]
        latencies = [result.latency * 1000 for run in group for result in run.results]
        images = sum(len(run.results) for run in group)
        cpu: dict[str, float] = defaultdict(float)
        for run in group:
            for name, seconds in run.cpu.items():
                cpu[name] += seconds
        median = statistics.median(rates)
        sizes = [result.size for run in group for result in run.results]
        rows.append(
            Row(
                engine=engine,
                concurrency=concurrency,
                job=job,
                rounds=len(group),
                images=images,
                failures=sum(len(run.failures) for run in group),
                throughput=median,
                spread=(max(rates) - min(rates)) / median if median else 0.0,
                p50_ms=percentile(latencies, 0.50),
                p95_ms=percentile(latencies, 0.95),
                p99_ms=percentile(latencies, 0.99),
                cpu_per_image={name: seconds / images for name, seconds in cpu.items()},
                output_kb=statistics.mean(sizes) / 1024 if sizes else 0.0,
                ssim=ssims.get((family(engine), job)),
            )
        )
    return rows


def family(engine: str) -> str:
    return engine.split(" x")[0].split(" (")[0]


def score_quality(runs: Sequence[Run], folder: Path) -> dict[tuple[str, str], float]:
    """Mean SSIM per (engine family, job) of the outputs kept in the first round."""
    originals: dict[str, bytes] = {}
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    done: set[tuple[str, str]] = set()
    for run in runs:
        key = (family(run.engine), run.job)
        job = JOBS_BY_NAME[run.job]
        if key in done or job.fit is None or not any(r.output for r in run.results):
            continue
        done.add(key)
        for result in run.results:
            if result.output is None:
                continue
            original = originals.setdefault(result.name, (folder / result.name).read_bytes())
            scores[key].append(quality.score(original, result.output))
    return {key: statistics.mean(values) for key, values in scores.items()}


# --- the report ---------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _find(rows: Sequence[Row], engine: str, job: str, concurrency: int) -> Row | None:
    for row in rows:
        same = family(row.engine) == engine and (row.job, row.concurrency) == (job, concurrency)
        if same and "replicas" not in row.engine:
            return row
    return None


def _cpu_text(row: Row, names: Sequence[str]) -> str:
    return " / ".join(f"{row.cpu_per_image.get(name, 0.0) * 1000:.0f}" for name in names)


def report(
    rows: Sequence[Row],
    scale_rows: Sequence[Row],
    pictures: Sequence[corpus.Picture],
    facts: dict[str, Any],
) -> tuple[list[str], list[tuple[str, bool | None, str]]]:
    lines = [
        "# imagemesh benchmark",
        "",
        f"{facts['date']} on {facts['machine']}; libvips {facts['libvips']}, "
        f"thumbor {facts['thumbor']}; {facts['rounds']} rounds, interleaved; "
        f"{len(pictures)} images per run. `make bench` wrote this file.",
        "",
        "Throughput: median over rounds (spread = (max - min) / median). Latency: request to "
        "last byte of the result, pooled over rounds. CPU: milliseconds per image, from "
        "/proc. SSIM: mean against a full-resolution Lanczos-3 reference (1.0 = identical).",
        "",
    ]
    for job in JOBS:
        lines += [f"## {job.title} (`{job.name}`)", ""]
        table = []
        for row in sorted(
            (r for r in rows if r.job == job.name), key=lambda r: (family(r.engine), r.concurrency)
        ):
            if family(row.engine) == "imagemesh":
                cpu = _cpu_text(row, SERVICES) + " (infra " + _cpu_text(row, INFRA) + ")"
            else:
                cpu = _cpu_text(row, ("engine",))
            table.append(
                (
                    row.engine,
                    row.concurrency,
                    f"{row.throughput:.2f}",
                    f"{row.spread:.0%}",
                    f"{row.p50_ms:.0f}",
                    f"{row.p95_ms:.0f}",
                    f"{row.p99_ms:.0f}",
                    cpu,
                    f"{row.output_kb:.0f}",
                    "n/a" if row.ssim is None else f"{row.ssim:.4f}",
                    row.failures,
                )
            )
        lines += _table(
            (
                "engine",
                "concurrency",
                "img/s",
                "spread",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "CPU ms/img (imagemesh: upload / runner / imageproc / provenancedb)",
                "output KB",
                "SSIM",
                "failed",
            ),
            table,
        )
        lines.append("")
    lines += ["## Ratios", ""]
    ratio_rows = []
    for job in JOBS:
        for concurrency in CONCURRENCY:
            mesh = _find(rows, "imagemesh", job.name, concurrency)
            raw = _find(rows, "raw pyvips", job.name, min(concurrency, PROCESSES))
            thumbor = _find(rows, "thumbor", job.name, concurrency)
            if mesh is None:
                continue
            ratio_rows.append(
                (
                    job.name,
                    concurrency,
                    f"{mesh.throughput / raw.throughput:.2f}" if raw else "n/a",
                    f"{mesh.throughput / thumbor.throughput:.2f}" if thumbor else "n/a",
                    f"{mesh.p50_ms / thumbor.p50_ms:.2f}" if thumbor else "n/a",
                )
            )
    lines += _table(
        (
            "job",
            "concurrency",
            f"imagemesh / raw pyvips x min(c, {PROCESSES}) throughput",
            "imagemesh / thumbor throughput",
            "imagemesh / thumbor p50 latency",
        ),
        ratio_rows,
    )
    lines.append("")
    if scale_rows:
        lines += [
            f"## Scale-out: imageproc and imageproc_runner replicas (c = {max(CONCURRENCY)})",
            "",
        ]
        scale_table = []
        for job in JOBS:
            one = _find(rows, "imagemesh", job.name, max(CONCURRENCY))
            scaled = [r for r in scale_rows if r.job == job.name]
            for row in ([one] if one else []) + scaled:
                replicas = SCALE_REPLICAS if "replicas" in row.engine else 1
                latency = f"{row.p50_ms:.0f}", f"{row.p95_ms:.0f}"
                scale_table.append((job.name, replicas, f"{row.throughput:.2f}", *latency))
        lines += _table(("job", "replicas", "img/s", "p50 ms", "p95 ms"), scale_table)
        lines += [
            "",
            f"This machine has {PROCESSES} cores, and one imageproc already runs "
            "IMAGEPROC_CONCURRENCY pipelines in parallel (one per core): replicas add "
            "throughput when there are more cores (or machines) to put them on.",
            "",
        ]
    lines += ["## Peak RSS per service process (MB, VmHWM)", ""]
    lines += _table(
        ("process", "peak RSS MB", "images processed"),
        [
            (name, f"{mb:.0f}", facts["images_by_instance"].get(name, ""))
            for name, mb in sorted(facts["peaks"].items())
        ],
    )
    lines.append("")
    targets = check_targets(rows, facts)
    lines += ["## Targets", ""]
    lines += _table(
        ("target", "result", "measured"),
        [
            (name, "n/a" if ok is None else ("met" if ok else "MISSED"), detail)
            for name, ok, detail in targets
        ],
    )
    lines += ["", "## Corpus", ""]
    lines += _table(
        ("file", "source", "KB", "size", "MP", "progressive"),
        [
            (
                p.name,
                p.source.removeprefix("/usr/share/"),
                p.bytes // 1024,
                f"{p.width}x{p.height}",
                f"{p.megapixels:.1f}",
                "yes" if p.progressive else "no",
            )
            for p in pictures
        ],
    )
    return lines, targets


def check_targets(rows: Sequence[Row], facts: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    targets: list[tuple[str, bool | None, str]] = []
    mesh_fit = [r for r in rows if family(r.engine) == "imagemesh" and r.job == "fit512"]
    thumbor_fit = [r for r in rows if family(r.engine) == "thumbor" and r.job == "fit512"]
    if mesh_fit and thumbor_fit:
        mesh_cpu = _pooled_cpu(mesh_fit, "imageproc")
        thumbor_cpu = _pooled_cpu(thumbor_fit, "engine")
        mesh_ssim, thumbor_ssim = mesh_fit[0].ssim or 0.0, thumbor_fit[0].ssim or 0.0
        targets.append(
            (
                "fit512: imageproc CPU/image <= thumbor's, SSIM >= thumbor's",
                mesh_cpu <= thumbor_cpu and mesh_ssim >= thumbor_ssim,
                f"{mesh_cpu * 1000:.1f} vs {thumbor_cpu * 1000:.1f} ms; "
                f"SSIM {mesh_ssim:.4f} vs {thumbor_ssim:.4f}",
            )
        )
    for job in JOBS:
        mesh = _find(rows, "imagemesh", job.name, max(CONCURRENCY))
        raw = _find(rows, "raw pyvips", job.name, PROCESSES)
        if mesh and raw:
            ratio = mesh.throughput / raw.throughput
            targets.append(
                (
                    f"{job.name}: end-to-end throughput >= {TARGET_E2E_OVER_RAW}x raw pyvips "
                    f"x{PROCESSES} (imagemesh c={max(CONCURRENCY)}, {PROCESSES} pipelines)",
                    ratio >= TARGET_E2E_OVER_RAW,
                    f"{ratio:.2f}x ({mesh.throughput:.2f} vs {raw.throughput:.2f} img/s)",
                )
            )
        mesh1, raw1 = _find(rows, "imagemesh", job.name, 1), _find(rows, "raw pyvips", job.name, 1)
        if mesh1 and raw1:
            overhead = mesh1.p50_ms - raw1.p50_ms
            targets.append(
                (
                    f"{job.name}: p50 latency at c=1 <= raw + {TARGET_OVERHEAD_MS:.0f} ms",
                    overhead <= TARGET_OVERHEAD_MS,
                    f"{mesh1.p50_ms:.0f} vs {raw1.p50_ms:.0f} ms (+{overhead:.0f} ms)",
                )
            )
    imageproc_peak = facts["peaks"].get("imageproc")
    processed = facts["images_by_instance"].get("imageproc", 0)
    if imageproc_peak is not None:
        targets.append(
            (
                f"imageproc peak RSS <= {TARGET_RSS_MB:.0f} MB after "
                f">= {TARGET_RSS_IMAGES} mixed images incl. 24 MP",
                imageproc_peak <= TARGET_RSS_MB if processed >= TARGET_RSS_IMAGES else None,
                f"{imageproc_peak:.0f} MB after {processed} images",
            )
        )
    dither = facts.get("dither")
    if dither:
        targets.append(
            (
                f"dither: Floyd-Steinberg >= {TARGET_DITHER_SPEEDUP:.0f}x the pure-Python loop",
                dither["speedup"] >= TARGET_DITHER_SPEEDUP,
                f"{dither['speedup']:.0f}x ({dither['python_s_per_mp']:.2f} vs "
                f"{dither['imageproc_s_per_mp'] * 1000:.1f} ms per MP)",
            )
        )
    return targets


def _pooled_cpu(rows: Sequence[Row], name: str) -> float:
    images = sum(row.images for row in rows)
    return sum(row.cpu_per_image.get(name, 0.0) * row.images for row in rows) / images


COLOURS = {"raw pyvips": "#9e9e9e", "thumbor": "#e69f00", "imagemesh": "#0072b2"}


def chart(rows: Sequence[Row], scale_rows: Sequence[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(JOBS), figsize=(5 * len(JOBS), 4.2), sharey=False)
    for axis, job in zip(axes, JOBS, strict=True):
        bars = sorted(
            (r for r in [*rows, *scale_rows] if r.job == job.name),
            key=lambda r: (family(r.engine), r.engine, r.concurrency),
        )
        labels = [f"{r.engine}\nc={r.concurrency}" for r in bars]
        colours = [
            {"raw pyvips": "#9e9e9e", "thumbor": "#e69f00", "imagemesh": "#0072b2"}[
                family(r.engine)
            ]
            for r in bars
        ]
        axis.bar(range(len(bars)), [r.throughput for r in bars], color=colours)
        axis.set_xticks(range(len(bars)), labels, rotation=60, ha="right", fontsize=7)
        axis.set_title(job.title, fontsize=9)
        axis.set_ylabel("images / s (median of rounds)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- main -----------------------------------------------------------------------------------


def machine() -> str:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    system = f"{platform.system()} {platform.release()}"
    return f"{model or platform.processor()}, {PROCESSES} cores, {mem_kb / 2**20:.0f} GiB, {system}"


async def run_all(args: argparse.Namespace) -> int:
    import pyvips

    started = time.monotonic()
    missing = corpus.missing_photos()
    if missing:
        log(f"installing {', '.join(corpus.PACKAGES)} ({len(missing)} photos missing)")
        stack.apt_install(corpus.PACKAGES)
    folder = WORK / "corpus"
    pictures = corpus.build(folder)
    if args.quick:
        pictures = pictures[:: max(1, len(pictures) // 6)]
    names = [picture.name for picture in pictures]
    log(f"corpus: {len(pictures)} images in {folder}")
    thumbor_command = install_thumbor(WORK / "thumbor")
    thumbor_version = command_output([str(thumbor_command), "--version"])

    log("starting the local stack (tools/stack.py up, benchmark settings)")
    stack_up(1)
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
        runs = await measure(plans, names, args.rounds)
    finally:
        thumbor.stop()
        for pool in pools.values():
            pool.close()
    peaks = service_peaks()
    images_by_instance = {"imageproc": sum(len(r.results) for r in runs if r.engine == "imagemesh")}

    scale_runs: list[Run] = []
    if not args.no_scale:
        log(f"scale-out: IMAGEPROC_REPLICAS={SCALE_REPLICAS}")
        stack_up(SCALE_REPLICAS)
        label = f"imagemesh ({SCALE_REPLICAS} replicas)"
        scaled = Imagemesh(stack_upload_url(), folder, process_groups, label)
        scale_runs = await measure(
            [Plan(label, max(CONCURRENCY), JOBS, scaled)], names, args.rounds
        )
        peaks |= {f"{name} (replicas run)": mb for name, mb in service_peaks().items()}
    if not args.keep_stack:
        stack_down()

    log("quality (SSIM against full-resolution Lanczos references)")
    ssims = score_quality(runs, folder)
    log("dither against the pure-Python loop")
    dither = dither_speedup([folder / name for name in names[:3]])
    rows = summarise(runs, ssims)
    scale_rows = summarise(scale_runs, ssims)
    facts = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "thumbor": thumbor_version.removeprefix("Thumbor ").split(" ")[0] or "?",
        "rounds": args.rounds,
        "peaks": peaks,
        "images_by_instance": images_by_instance,
        "dither": dither,
        "seconds": round(time.monotonic() - started),
    }
    lines, targets = report(rows, scale_rows, pictures, facts)
    lines += ["", f"The whole run took {facts['seconds']} s."]
    out = Path(args.out)
    write(out / "bench.md", "\n".join(lines) + "\n")
    write(
        out / "bench.json",
        json.dumps(
            {
                "facts": facts,
                "rows": [asdict(row) for row in rows],
                "scale": [asdict(row) for row in scale_rows],
                "corpus": [asdict(p) for p in pictures],
                "targets": [{"target": n, "met": ok, "measured": d} for n, ok, d in targets],
            },
            indent=1,
        )
        + "\n",
    )
    chart(rows, scale_rows, out / "bench.png")
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


def stack_upload_url() -> str:
    config = stack.load_config()
    return f"http://127.0.0.1:{config['UPLOAD_PORT']}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a sixth of the corpus (a try-out)")
    parser.add_argument("--no-scale", action="store_true", help="skip the replicas run")
    parser.add_argument("--keep-stack", action="store_true", help="leave the services running")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    return asyncio.run(run_all(args))


if __name__ == "__main__":
    sys.exit(main())
