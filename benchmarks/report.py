"""bench.md: the tables, the targets (performance, quality, dither) and the chart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import corpus, overhead, repeat, soakreport
from benchmarks.engines import JOBS
from benchmarks.measure import Row, family
from benchmarks.stackprocs import INFRA, SERVICES

CONCURRENCY = (1, 2, 4)
SCALE_REPLICAS = 2
# The targets, on this machine.
TARGET_E2E_OVER_RAW = 0.7
TARGET_OVERHEAD_MS = 40.0
TARGET_RSS_MB = 200.0
TARGET_RSS_IMAGES = 500
TARGET_DITHER_SPEEDUP = 20.0

Target = tuple[str, bool | None, str]


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def find(rows: Sequence[Row], engine: str, job: str, concurrency: int) -> Row | None:
    for row in rows:
        same = family(row.engine) == engine and (row.job, row.concurrency) == (job, concurrency)
        if same and "replicas" not in row.engine:
            return row
    return None


def _cpu_text(row: Row, names: Sequence[str]) -> str:
    return " / ".join(f"{row.cpu_per_image.get(name, 0.0) * 1000:.0f}" for name in names)


def _job_row(row: Row) -> tuple[object, ...]:
    if family(row.engine) == "imagemesh":
        cpu = _cpu_text(row, SERVICES) + " (infra " + _cpu_text(row, INFRA) + ")"
    else:
        cpu = _cpu_text(row, ("engine",))
    return (
        row.engine,
        row.concurrency,
        f"{row.throughput:.2f}",
        f"{row.spread:.0%}",
        f"{row.p50_ms:.0f}",
        f"{row.p50_spread:.0%}",
        f"{row.p95_ms:.0f}",
        f"{row.p99_ms:.0f}",
        cpu,
        f"{row.output_kb:.0f}",
        "n/a" if row.ssim is None else f"{row.ssim:.4f}",
        row.failures,
    )


JOB_HEADER = (
    "engine",
    "concurrency",
    "img/s",
    "spread",
    "p50 ms",
    "p50 spread",
    "p95 ms",
    "p99 ms",
    "CPU ms/img (imagemesh: upload / runner / imageproc / provenancedb)",
    "output KB",
    "SSIM",
    "failed",
)


def job_sections(rows: Sequence[Row]) -> list[str]:
    lines: list[str] = []
    for job in JOBS:
        mine = sorted(
            (r for r in rows if r.job == job.name), key=lambda r: (family(r.engine), r.concurrency)
        )
        lines += [f"## {job.title} (`{job.name}`)", ""]
        lines += table(JOB_HEADER, [_job_row(row) for row in mine])
        lines.append("")
    return lines


def ratio_section(rows: Sequence[Row], processes: int) -> list[str]:
    ratio_rows = []
    for job in JOBS:
        for concurrency in CONCURRENCY:
            mesh = find(rows, "imagemesh", job.name, concurrency)
            raw = find(rows, "raw pyvips", job.name, min(concurrency, processes))
            thumbor = find(rows, "thumbor", job.name, concurrency)
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
    header = (
        "job",
        "concurrency",
        f"imagemesh / raw pyvips x min(c, {processes}) throughput",
        "imagemesh / thumbor throughput",
        "imagemesh / thumbor p50 latency",
    )
    return ["## Ratios", "", *table(header, ratio_rows), ""]


def scale_section(rows: Sequence[Row], scale_rows: Sequence[Row], processes: int) -> list[str]:
    if not scale_rows:
        return []
    top = max(CONCURRENCY)
    found = []
    for job in JOBS:
        one = find(rows, "imagemesh", job.name, top)
        for row in ([one] if one else []) + [r for r in scale_rows if r.job == job.name]:
            replicas = SCALE_REPLICAS if "replicas" in row.engine else 1
            found.append(
                (
                    job.name,
                    replicas,
                    f"{row.throughput:.2f}",
                    f"{row.p50_ms:.0f}",
                    f"{row.p95_ms:.0f}",
                )
            )
    return [
        f"## Scale-out: imageproc and imageproc_runner replicas (c = {top})",
        "",
        *table(("job", "replicas", "img/s", "p50 ms", "p95 ms"), found),
        "",
        f"This machine has {processes} cores, and one imageproc already runs "
        "IMAGEPROC_CONCURRENCY pipelines in parallel (one per core): replicas add "
        "throughput when there are more cores (or machines) to put them on.",
        "",
    ]


def memory_section(facts: dict[str, Any]) -> list[str]:
    """Per group over the single-replica phase: peak of the summed RSS (0.2 s samples),
    peak of the summed Pss (imageproc, 1 s), and the largest single process."""
    memory: dict[str, dict[str, float]] = facts.get("memory", {})
    through = facts.get("imageproc_jobs", {})
    rows = [
        (
            name,
            f"{peaks['sum_rss']:.0f}",
            f"{peaks['sum_pss']:.0f}" if peaks.get("sum_pss") else "",
            f"{peaks['single']:.0f}",
        )
        for name, peaks in sorted(memory.items())
    ]
    lines = [
        "## Memory per process group (MB, one replica, over the measured runs and the soak)",
        "",
        "Sum RSS: peak of the sum of VmRSS over the group's processes, sampled every 0.2 s "
        "(pages shared between imageproc's forkserver and its workers count in each). Sum "
        "Pss: the same with shared pages counted once (sampled every second). Largest "
        "process: VmHWM (read every second) or the largest VmRSS sampled; VmHWM counts "
        "from the process's start, and the benchmark restarts the services but not the "
        "infrastructure servers.",
        "",
        *table(("group", "peak sum RSS", "peak sum Pss", "largest process"), rows),
        "",
        f"Jobs through the one imageproc: {through.get('total', 0)} succeeded "
        f"({through.get('large_progressive', 0)} of them 24 MP progressive JPEGs).",
        "",
    ]
    peaks = facts.get("peaks", {})
    if peaks:
        lines += [
            "Peak RSS (VmHWM) of the largest process per instance, at the end of each phase:",
            "",
        ]
        lines += table(("instance", "MB"), [(n, f"{mb:.0f}") for n, mb in sorted(peaks.items())])
        lines.append("")
    return lines


def corpus_section(pictures: Sequence[corpus.Picture]) -> list[str]:
    rows = [
        (
            p.name,
            p.source.removeprefix("/usr/share/"),
            p.bytes // 1024,
            f"{p.width}x{p.height}",
            f"{p.megapixels:.1f}",
            "yes" if p.progressive else "no",
        )
        for p in pictures
    ]
    header = ("file", "source", "KB", "size", "MP", "progressive")
    return ["## Corpus", "", *table(header, rows)]


def report(
    rows: Sequence[Row],
    scale_rows: Sequence[Row],
    pictures: Sequence[corpus.Picture],
    facts: dict[str, Any],
) -> tuple[list[str], list[Target]]:
    """bench.md's lines, and the targets (for bench.json)."""
    processes = facts["processes"]
    lines = [
        "# imagemesh benchmark",
        "",
        f"{facts['date']} on {facts['machine']}; libvips {facts['libvips']}, "
        f"thumbor {facts['thumbor']}; {facts['rounds']} rounds, interleaved; "
        f"{len(pictures)} images per run. `make bench` wrote this file.",
        "",
        "Throughput: median over rounds (spread = (max - min) / median over rounds, the "
        "variance to read differences against). Latency: request to last byte of the "
        "result, pooled over rounds. CPU: milliseconds per image, from /proc. SSIM: mean "
        "against a full-resolution Lanczos-3 reference (1.0 = identical). Every imagemesh "
        "and raw pyvips job has input bytes of its own (a JPEG comment), so that no output "
        "can be reused.",
        "",
    ]
    lines += job_sections(rows) + ratio_section(rows, processes)
    lines += overhead.table(rows) + scale_section(rows, scale_rows, processes)
    lines += memory_section(facts)
    lines += repeat.lines(facts["repeat"]) if facts.get("repeat") else []
    lines += soakreport.bench_lines(facts.get("soak"))
    targets = check_targets(rows, facts)
    verdicts = [
        (n, "n/a" if ok is None else ("met" if ok else "MISSED"), d) for n, ok, d in targets
    ]
    lines += ["## Targets", "", *table(("target", "result", "measured"), verdicts), ""]
    return lines + corpus_section(pictures), targets


def check_targets(rows: Sequence[Row], facts: dict[str, Any]) -> list[Target]:
    """The six performance targets (overhead, throughput, latency, memory, reuse, soak),
    then the CPU/quality and dither targets."""
    processes = facts["processes"]
    targets = [overhead.target(rows)]
    targets += throughput_targets(rows, processes)
    targets += latency_targets(rows)
    targets.append(memory_target(facts))
    targets.append(repeat.target(facts.get("repeat")))
    targets.append(soakreport.target(facts.get("soak")))
    targets += cpu_quality_target(rows)
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


def throughput_targets(rows: Sequence[Row], processes: int) -> list[Target]:
    targets: list[Target] = []
    top = max(CONCURRENCY)
    for job in JOBS:
        name = (
            f"{job.name}: end-to-end throughput >= {TARGET_E2E_OVER_RAW}x raw pyvips "
            f"x{processes} (imagemesh c={top}, {processes} pipelines)"
        )
        mesh = find(rows, "imagemesh", job.name, top)
        raw = find(rows, "raw pyvips", job.name, processes)
        if not mesh or not raw or not raw.throughput:
            targets.append((name, None, "not measured"))
            continue
        ratio = mesh.throughput / raw.throughput
        detail = (
            f"{ratio:.3f}x ({mesh.throughput:.2f} ±{mesh.spread / 2:.0%} vs "
            f"{raw.throughput:.2f} ±{raw.spread / 2:.0%} img/s)"
        )
        targets.append((name, ratio >= TARGET_E2E_OVER_RAW, detail))
    return targets


def latency_targets(rows: Sequence[Row]) -> list[Target]:
    targets: list[Target] = []
    for job in JOBS:
        name = f"{job.name}: p50 latency at c=1 <= raw + {TARGET_OVERHEAD_MS:.0f} ms"
        mesh, raw = find(rows, "imagemesh", job.name, 1), find(rows, "raw pyvips", job.name, 1)
        if not mesh or not raw:
            targets.append((name, None, "not measured"))
            continue
        extra = mesh.p50_ms - raw.p50_ms
        detail = (
            f"{mesh.p50_ms:.0f} ±{mesh.p50_spread / 2:.0%} vs {raw.p50_ms:.0f} "
            f"±{raw.p50_spread / 2:.0%} ms (+{extra:.0f} ms)"
        )
        targets.append((name, extra <= TARGET_OVERHEAD_MS, detail))
    return targets


def memory_target(facts: dict[str, Any]) -> Target:
    """Judged on the peak of imageproc's memory as a whole: the Pss sum over its processes
    (parent, forkserver, workers), which counts the pages they share once, as the kernel
    does; summed RSS would count them in every process. The RSS sum and the largest single
    process are shown beside it."""
    name = (
        f"memory: imageproc peak (Pss summed over its processes) <= {TARGET_RSS_MB:.0f} MB "
        f"over >= {TARGET_RSS_IMAGES} mixed jobs incl. 24 MP progressive"
    )
    peaks = facts.get("memory", {}).get("imageproc")
    through = facts.get("imageproc_jobs", {})
    if not peaks:
        return name, None, "not measured"
    jobs, large = through.get("total", 0), through.get("large_progressive", 0)
    enough = jobs >= TARGET_RSS_IMAGES and large > 0 and bool(peaks.get("sum_pss"))
    detail = (
        f"sum Pss {peaks['sum_pss']:.0f} MB (sum RSS {peaks['sum_rss']:.0f}, largest process "
        f"{peaks['single']:.0f}) over {jobs} jobs, {large} of them 24 MP progressive"
    )
    return name, (peaks["sum_pss"] <= TARGET_RSS_MB) if enough else None, detail


def cpu_quality_target(rows: Sequence[Row]) -> list[Target]:
    mesh = [r for r in rows if family(r.engine) == "imagemesh" and r.job == "fit512"]
    thumbor = [r for r in rows if family(r.engine) == "thumbor" and r.job == "fit512"]
    if not mesh or not thumbor:
        return []
    mesh_cpu, thumbor_cpu = pooled_cpu(mesh, "imageproc"), pooled_cpu(thumbor, "engine")
    mesh_ssim, thumbor_ssim = mesh[0].ssim or 0.0, thumbor[0].ssim or 0.0
    return [
        (
            "fit512: imageproc CPU/image <= thumbor's, SSIM >= thumbor's",
            mesh_cpu <= thumbor_cpu and mesh_ssim >= thumbor_ssim,
            f"{mesh_cpu * 1000:.1f} vs {thumbor_cpu * 1000:.1f} ms; "
            f"SSIM {mesh_ssim:.4f} vs {thumbor_ssim:.4f}",
        )
    ]


def pooled_cpu(rows: Sequence[Row], name: str) -> float:
    images = sum(row.images for row in rows)
    return (
        sum(row.cpu_per_image.get(name, 0.0) * row.images for row in rows) / images
        if images
        else 0.0
    )


COLOURS = {"raw pyvips": "#9e9e9e", "thumbor": "#e69f00", "imagemesh": "#0072b2"}


def chart(rows: Sequence[Row], scale_rows: Sequence[Row], path: Path) -> None:
    """bench.png (skipped without matplotlib, which `make bench` installs with the bench
    dependency group)."""
    try:
        import matplotlib
    except ImportError:
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(JOBS), figsize=(5 * len(JOBS), 4.2), sharey=False)
    for axis, job in zip(axes, JOBS, strict=True):
        bars = sorted(
            (r for r in [*rows, *scale_rows] if r.job == job.name),
            key=lambda r: (family(r.engine), r.engine, r.concurrency),
        )
        axis.bar(
            range(len(bars)),
            [r.throughput for r in bars],
            color=[COLOURS[family(r.engine)] for r in bars],
        )
        labels = [f"{r.engine}\nc={r.concurrency}" for r in bars]
        axis.set_xticks(range(len(bars)), labels, rotation=60, ha="right", fontsize=7)
        axis.set_title(job.title, fontsize=9)
        axis.set_ylabel("images / s (median of rounds)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
