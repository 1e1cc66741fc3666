"""Worker memory and libvips tuning for imageproc's "fit in 512x512, JPEG q80, strip".

Run from the repository root: ``.venv/bin/python -m benchmarks.memory`` (or ``make bench-memory``).
Writes ``benchmarks/results/memory.md`` and prints it.

Every measurement runs in a fresh child process (``python -m benchmarks.memory --child``,
``benchmarks.memory_child``) that sets itself up as the imageproc worker does
(``harden_vips()``, the RLIMIT_AS budget, a thread pool) and calls
``imageproc.operations.run_pipeline``. This parent never imports pyvips, so it stays
small: on Linux a child's ``ru_maxrss`` starts from the RSS of the process that forked
it, while ``VmHWM`` (``/proc/self/status``) belongs to the new program alone. Both are
reported; the verdict uses the larger.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.memory_child import (
    CHILD_TASKS,
    PIPELINE,
    SERVICE_CONCURRENCY,
    SERVICE_MEMORY_LIMIT_MB,
)
from benchmarks.memory_tuning import log, measure_tuning, run_child, table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "memory.md"
PHOTO_DIR = Path("/usr/share/backgrounds")
RSS_LIMIT_MB = 200.0
SINGLE_REPEATS = 2
LOOP_IMAGES = 150
# Coefficients per pixel: luma plus two chroma planes at this fraction of the pixels each.
CHROMA_SHARE = {"4:2:0": 1.5, "4:4:4": 3.0}

# --- the parent side: orchestrate, aggregate, report -----------------------------------


ARENA_ENVS: dict[str, dict[str, str]] = {
    "MALLOC_ARENA_MAX=2": {"MALLOC_ARENA_MAX": "2"},
    "glibc default": {},
}


MMAP_CANDIDATE = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": str(1024 * 1024)}
LOOP_CONFIGS: list[tuple[int, str, dict[str, str]]] = [
    (1, "MALLOC_ARENA_MAX=2", ARENA_ENVS["MALLOC_ARENA_MAX=2"]),
    (1, "glibc default", ARENA_ENVS["glibc default"]),
    (SERVICE_CONCURRENCY, "MALLOC_ARENA_MAX=2", ARENA_ENVS["MALLOC_ARENA_MAX=2"]),
    (SERVICE_CONCURRENCY, "glibc default", ARENA_ENVS["glibc default"]),
    (SERVICE_CONCURRENCY, "MALLOC_ARENA_MAX=2 + MALLOC_MMAP_THRESHOLD_=1MiB", MMAP_CANDIDATE),
]


def _photos() -> list[str]:
    if not PHOTO_DIR.is_dir():
        return []
    return sorted(str(p) for p in PHOTO_DIR.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb() -> float:
    with open("/proc/meminfo") as info:
        kb = next(int(line.split()[1]) for line in info if line.startswith("MemTotal"))
    return round(kb / 2**20, 1)


SINGLE_HEADER = [
    "input",
    "allocator",
    "baseline RSS (MB)",
    "peak VmHWM (MB) [max]",
    "peak ru_maxrss (MB)",
    "job's own peak (MB)",
    "RSS after (MB)",
    "job time (s)",
    "output",
]


def _single_row(variant: str, label: str, runs: list[dict[str, Any]]) -> list[object]:
    """One (input, allocator) line of section 1: medians over the fresh workers."""
    peak = statistics.median(max(r["peak_hwm_mb"], r["peak_maxrss_mb"]) for r in runs)
    baseline = statistics.median(r["baseline_mb"] for r in runs)
    return [
        f"{variant} ({runs[0]['input_mb']} MB file)",
        label,
        f"{baseline:.1f}",
        f"{statistics.median(r['peak_hwm_mb'] for r in runs):.1f} "
        f"[{max(r['peak_hwm_mb'] for r in runs):.1f}]",
        f"{statistics.median(r['peak_maxrss_mb'] for r in runs):.1f}",
        f"{peak - baseline:.1f}",
        f"{statistics.median(r['after_mb'] for r in runs):.1f}",
        f"{statistics.median(r['seconds'] for r in runs):.2f}",
        runs[0]["output"],
    ]


def _single_verdict(variant: str, worst: float) -> tuple[str, bool]:
    ok = worst < RSS_LIMIT_MB
    line = (
        f"- **{'PASS' if ok else 'FAIL'}**: 24 MP {variant} JPEG thumbnail, peak "
        f"worker RSS {worst:.1f} MB (worst of {SINGLE_REPEATS}, "
        f"MALLOC_ARENA_MAX=2 as the services run) "
        f"{'<' if ok else '>='} {RSS_LIMIT_MB:.0f} MB"
    )
    return line, ok


def _measure_single(big: dict[str, str]) -> tuple[list[str], bool]:
    lines = [
        "## 1. One 24 MP JPEG in a fresh worker",
        "",
        f"6000x4000 generated photo-like JPEG (Q90), pipeline `{json.dumps(PIPELINE)}`; "
        f"the worker imports imageproc, calls `harden_vips()`, sets the "
        f"{SERVICE_MEMORY_LIMIT_MB} MB RLIMIT_AS, then runs one job in its "
        f"{SERVICE_CONCURRENCY}-thread pool. Baseline = RSS after set-up, before the job. "
        f"Peak = VmHWM (ru_maxrss alongside). {SINGLE_REPEATS} fresh workers each; "
        "medians, max in brackets.",
        "",
    ]
    rows: list[list[object]] = []
    verdicts: list[str] = []
    passed = True
    for variant, path in big.items():
        for label, env in ARENA_ENVS.items():
            runs = [run_child("single", {"path": path}, env=env) for _ in range(SINGLE_REPEATS)]
            log(f"single {variant} {label}: {[r['peak_hwm_mb'] for r in runs]} MB")
            rows.append(_single_row(variant, label, runs))
            if label.startswith("MALLOC_ARENA_MAX"):
                worst = max(max(r["peak_hwm_mb"], r["peak_maxrss_mb"]) for r in runs)
                verdict, ok = _single_verdict(variant, worst)
                verdicts.append(verdict)
                passed = passed and ok
    lines += table(SINGLE_HEADER, rows)
    coefficients = {name: 6000 * 4000 * share * 2 / 2**20 for name, share in CHROMA_SHARE.items()}
    note = (
        "Progressive JPEGs: libjpeg keeps the whole image's DCT coefficients (2 bytes each) "
        "until the last scan, whatever the shrink-on-load factor: "
        + ", ".join(f"{mb:.0f} MB at {name}" for name, mb in coefficients.items())
        + " for 6000x4000. Baseline JPEGs decode a strip at a time."
    )
    return [*lines, "", note, "", *verdicts, ""], passed


def _measure_loop(paths: list[str], source: str) -> list[str]:
    lines = [
        f"## 2. {LOOP_IMAGES} images in one worker ({source})",
        "",
        f"Same worker set-up; {LOOP_IMAGES} jobs, the {len(paths)} files cycled, 1 or "
        f"{SERVICE_CONCURRENCY} jobs in flight ({SERVICE_CONCURRENCY} = the service's default "
        "concurrency and prefetch; each job reads its file fresh). RSS = VmRSS in MB after "
        "the given image; growth = after the last minus after the first. The last allocator "
        "row is a candidate, not what the services run: a fixed mmap threshold makes glibc "
        "return every block of 1 MiB or more to the kernel on free. images/s here include "
        "file reads and are single runs: indicative only (see section 3 for throughput).",
        "",
    ]
    marks = sorted({1, len(paths), 50, 100, LOOP_IMAGES})
    rows: list[list[object]] = []
    for in_flight, label, env in LOOP_CONFIGS:
        run = run_child(
            "loop", {"paths": paths, "count": LOOP_IMAGES, "in_flight": in_flight}, env=env
        )
        rss = run["rss_after"]
        log(f"loop x{in_flight} {label}: {rss[0]} -> {rss[-1]} MB, peak {run['peak_hwm_mb']} MB")
        rows.append(
            [
                in_flight,
                label,
                run["baseline_mb"],
                *(rss[m - 1] for m in marks),
                f"{rss[-1] - rss[0]:+.1f}",
                run["peak_hwm_mb"],
                run["images_per_s"],
            ]
        )
    lines += table(
        [
            "in flight",
            "allocator",
            "baseline",
            *(f"after #{m}" for m in marks),
            "growth",
            "peak VmHWM",
            "images/s",
        ],
        rows,
    )
    return [*lines, ""]


def _factstable(paths: list[str]) -> list[str]:
    facts = run_child("facts", {"paths": paths})["files"]
    rows = [
        [
            f["name"],
            f"{f['width']}x{f['height']}",
            f"{f['width'] * f['height'] / 1e6:.1f}",
            f["mb"],
            "yes" if f["progressive"] else "no",
            f["chroma"],
        ]
        for f in facts
    ]
    return table(["file", "size", "MP", "MB", "progressive", "chroma"], rows)


def _corpus(photos: list[str], made: dict[str, Any]) -> tuple[list[str], str, str]:
    """(files, what they are, the report's note): the real photos, else the generated set."""
    if photos:
        source = f"{len(photos)} real photos in {PHOTO_DIR}"
        return photos, source, f"Real photographs: {len(photos)} JPEGs from {PHOTO_DIR}."
    varied = made["varied"]
    note = (
        f"**No real photographs**: {PHOTO_DIR} is absent or empty "
        "(`make test-deps` installs lomiri-wallpapers-16.04); a generated set of "
        f"{len(varied)} varied-size JPEGs stands in."
    )
    return varied, f"{len(varied)} generated varied JPEGs", note


def _header(machine: dict[str, Any], elapsed: float, load: float, note: str) -> list[str]:
    return [
        "# imageproc worker memory and libvips tuning",
        "",
        f"Generated by `make bench` (`python -m benchmarks.memory`) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s.",
        "",
        f"- Machine: {os.cpu_count()} cores (`nproc`), {_cpu_model()}, "
        f"{_mem_total_gb()} GB RAM, {platform.system()} {platform.release()}; "
        f"load average {load:.1f} at the start (other work on the machine slows "
        "the throughput figures, not the memory ones)",
        f"- Python {platform.python_version()}, libvips {machine['libvips']}, "
        f"pyvips {machine['pyvips']} (libvips default concurrency "
        f"{machine['vips_concurrency_default']}, default cache {machine['cache_default']} ops)",
        f"- Job: `{json.dumps(PIPELINE)}` through `imageproc.operations.run_pipeline` "
        "(metadata stripped by default)",
        f"- {note}",
        "",
    ]


def _measure_all() -> tuple[list[str], str, bool]:
    """Sections 1-3 and the inputs table (in a temporary folder for the generated files):
    (lines, corpus note, PASS)."""
    photos = _photos()
    with tempfile.TemporaryDirectory(prefix="imagemesh-bench-") as tmp:
        log("generating the 24 MP JPEGs" + ("" if photos else " and a varied set"))
        made = run_child("generate", {"dir": tmp, "varied": 0 if photos else 15})
        corpus, source, note = _corpus(photos, made)
        single_lines, passed = _measure_single(made["big"])
        lines = [
            "**Verdict (the worker memory targets):**",
            "",
            *[line for line in single_lines if line.startswith("- **")],
            "",
            *single_lines,
            *_measure_loop(corpus, source),
            *measure_tuning(corpus, source),
            "## Inputs",
            "",
            *_factstable([*made["big"].values(), *corpus]),
            "",
        ]
    return lines, note, passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        args = json.loads(options.child)
        print(json.dumps(CHILD_TASKS[args.pop("task")](args)))
        return 0
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    machine = run_child("machine", {})
    lines, note, passed = _measure_all()
    elapsed = time.perf_counter() - started
    text = "\n".join([*_header(machine, elapsed, load_at_start, note), *lines])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    log(f"wrote {RESULTS.relative_to(ROOT)} ({'PASS' if passed else 'FAIL'}, {elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
