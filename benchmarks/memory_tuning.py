"""Section 3 of `benchmarks.memory` (libvips tuning: throughput by pipelines in flight x
libvips threads x operation cache), and the parent's helpers both use: running a child
measurement, logging, tables. Like `benchmarks.memory`, nothing here imports pyvips.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.memory_child import SERVICE_CONCURRENCY, VIPS_DEFAULT_CACHE_OPS

ROOT = Path(__file__).resolve().parent.parent
TUNING_ROUNDS = 4
TUNING_PIPELINES = (1, 2)
TUNING_VIPS_THREADS = (1, 2)


def run_child(
    task: str, args: dict[str, Any], *, env: dict[str, str] | None = None
) -> dict[str, Any]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    child_env.update(env or {})
    payload = json.dumps({"task": task, **args})
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--child", payload],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {task} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


Config = tuple[int, int, bool]
"""(pipelines in flight, libvips threads per pipeline, operation cache on)."""
TUNING_HEADER = [
    "pipelines N",
    "vips threads k",
    "op cache",
    "images/s (best round)",
    "images/s (median)",
    "rounds",
    "CPU ms/image",
    "peak RSS (MB)",
]


def _tuning_runs(paths: list[str], configs: list[Config]) -> dict[Config, list[dict[str, Any]]]:
    """Every config once per round, rounds interleaved: drift hits every config alike."""
    results: dict[Config, list[dict[str, Any]]] = {c: [] for c in configs}
    for _ in range(TUNING_ROUNDS):
        for pipelines, threads, cache in configs:
            run = run_child(
                "throughput",
                {"paths": paths, "pipelines": pipelines, "cache": cache},
                env={"MALLOC_ARENA_MAX": "2", "VIPS_CONCURRENCY": str(threads)},
            )
            if run["vips_concurrency"] != threads:
                raise RuntimeError(f"VIPS_CONCURRENCY={threads} not applied: {run}")
            results[(pipelines, threads, cache)].append(run)
    return results


def _tuning_figures(
    results: dict[Config, list[dict[str, Any]]],
) -> dict[str, dict[Config, float]]:
    """Per config: the best round's images/s, the median CPU ms/image, the peak RSS."""
    return {
        "best": {c: max(r["images_per_s"] for r in runs) for c, runs in results.items()},
        "cpu": {
            c: statistics.median(r["cpu_ms_per_image"] for r in runs) for c, runs in results.items()
        },
        "peak": {c: max(r["peak_hwm_mb"] for r in runs) for c, runs in results.items()},
    }


def _tuning_row(
    config: Config, runs: list[dict[str, Any]], figures: dict[str, Any]
) -> list[object]:
    pipelines, threads, cache = config
    rates = [r["images_per_s"] for r in runs]
    log(f"tuning N={pipelines} k={threads} cache={cache}: {rates} img/s")
    return [
        pipelines,
        threads,
        f"on ({VIPS_DEFAULT_CACHE_OPS} ops)" if cache else "off (0)",
        f"**{figures['best'][config]:.2f}**",
        f"{statistics.median(rates):.2f}",
        " / ".join(f"{r:.2f}" for r in rates),
        f"{figures['cpu'][config]:.0f}",
        f"{figures['peak'][config]:.0f}",
    ]


def _tuning_conclusion(
    results: dict[Config, list[dict[str, Any]]], figures: dict[str, dict[Config, float]]
) -> str:
    best_rate, cpu_ms, peak = figures["best"], figures["cpu"], figures["peak"]
    best = max(results, key=lambda c: best_rate[c])
    service = (SERVICE_CONCURRENCY, os.cpu_count() or 1, False)
    spread = statistics.median(
        (max(rates) - min(rates)) / max(rates)
        for rates in ([r["images_per_s"] for r in runs] for runs in results.values())
    )
    best_text = (
        f"N={best[0]}, k={best[1]}, cache {'on' if best[2] else 'off'} "
        f"({best_rate[best]:.2f} images/s, {cpu_ms[best]:.0f} CPU ms/image)"
    )
    service_text = (
        f"the service's setting (N={service[0]} = cores, k={service[1]} = libvips default, "
        f"cache off) gives {best_rate[service]:.2f} images/s, {cpu_ms[service]:.0f} CPU "
        f"ms/image: best/service = {best_rate[best] / best_rate[service]:.2f}"
        if service in best_rate
        else "the service's setting is outside this grid"
    )
    pairs = [(n, k) for n in TUNING_PIPELINES for k in TUNING_VIPS_THREADS]
    cache_ratio = statistics.median(
        best_rate[(n, k, True)] / best_rate[(n, k, False)] for n, k in pairs
    )
    cache_cpu = statistics.median(cpu_ms[(n, k, True)] / cpu_ms[(n, k, False)] for n, k in pairs)
    cache_mb = statistics.median(peak[(n, k, True)] - peak[(n, k, False)] for n, k in pairs)
    return (
        f"**Conclusion:** fastest on this {os.cpu_count()}-core machine: {best_text}; "
        f"{service_text} (rounds of one setting differ by {spread:.0%} of the best here, "
        f"load average {os.getloadavg()[0]:.1f} at the end). Operation cache on vs off: "
        f"x{cache_ratio:.2f} throughput, x{cache_cpu:.2f} CPU per image, {cache_mb:+.0f} MB "
        "peak RSS (medians over the N x k settings)."
    )


def measure_tuning(paths: list[str], source: str) -> list[str]:
    configs = [
        (pipelines, threads, cache)
        for pipelines in TUNING_PIPELINES
        for threads in TUNING_VIPS_THREADS
        for cache in (False, True)
    ]
    results = _tuning_runs(paths, configs)
    figures = _tuning_figures(results)
    rows = [_tuning_row(config, results[config], figures) for config in configs]
    input_mb = round(sum(os.path.getsize(p) for p in paths) / 2**20, 1)
    return [
        f"## 3. Tuning: throughput over {source}",
        "",
        f"One process, MALLOC_ARENA_MAX=2, N pipelines in flight (thread pool) x k libvips "
        f"threads per pipeline (`VIPS_CONCURRENCY=k`, checked with `concurrency_get()`) x "
        f"operation cache off (`cache_set_max(0)`, as `harden_vips()` does) or at libvips' "
        f"default ({VIPS_DEFAULT_CACHE_OPS} ops). Each of the {len(paths)} images once (many "
        "different images: no cross-job cache hits possible), timed after a 2-image warm-up, "
        f"inputs read beforehand (peak RSS includes their {input_mb} MB); {TUNING_ROUNDS} "
        "interleaved rounds, a fresh process each. Other load on the machine only ever slows "
        "a round down, so the best round is the figure to compare; CPU ms per image (user + "
        "system, all threads, median) is not affected by it.",
        "",
        *table(TUNING_HEADER, rows),
        "",
        _tuning_conclusion(results, figures),
        "",
    ]
