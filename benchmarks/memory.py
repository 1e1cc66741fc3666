"""Worker memory and libvips tuning for imageproc's "fit in 512x512, JPEG q80, strip".

Run from the repository root: ``.venv/bin/python -m benchmarks.memory`` (or ``make bench-memory``).
Writes ``benchmarks/results/memory.md`` and prints it.

Every measurement runs in a fresh child process (``python -m benchmarks.memory --child``)
that sets itself up as the imageproc worker does (``harden_vips()``, the RLIMIT_AS budget,
a thread pool) and calls ``imageproc.operations.run_pipeline``. This parent never imports
pyvips, so it stays small: on Linux a child's ``ru_maxrss`` starts from the RSS of the
process that forked it, while ``VmHWM`` (``/proc/self/status``) belongs to the new program
alone. Both are reported; the verdict uses the larger.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "memory.md"
PHOTO_DIR = Path("/usr/share/backgrounds")
PIPELINE: list[dict[str, Any]] = [
    {"op": "thumbnail", "width": 512, "height": 512},
    {"op": "convert", "format": "jpeg", "quality": 80},
]
RSS_LIMIT_MB = 200.0
SINGLE_REPEATS = 2
LOOP_IMAGES = 150
TUNING_ROUNDS = 4
TUNING_PIPELINES = (1, 2)
TUNING_VIPS_THREADS = (1, 2)
# What imageproc's defaults are on this machine (Settings): one pipeline thread per core,
# a 60 s deadline per pipeline, a 3072 MB RLIMIT_AS budget.
SERVICE_CONCURRENCY = os.cpu_count() or 1
SERVICE_TIMEOUT = 60.0
SERVICE_MEMORY_LIMIT_MB = 3072
# Coefficients per pixel: luma plus two chroma planes at this fraction of the pixels each.
CHROMA_SHARE = {"4:2:0": 1.5, "4:4:4": 3.0}
# libvips' own operation-cache default (harden_vips sets it to 0).
VIPS_DEFAULT_CACHE_OPS = 100

# --- the child side: one fresh worker per measurement ----------------------------------


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise LookupError(field)


def _memory() -> dict[str, float]:
    return {
        "rss_mb": round(_status_mb("VmRSS"), 1),
        "hwm_mb": round(_status_mb("VmHWM"), 1),
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (immune to other load)."""
    times = os.times()
    return times.user + times.system


def _worker(cache_ops: int = 0) -> Callable[[bytes], Any]:
    """Set this process up as imageproc does at start; return one job as a function."""
    import pyvips

    from imageproc.operations import run_pipeline
    from pipeline import ImageLimits, harden_vips, parse_pipeline

    limit = SERVICE_MEMORY_LIMIT_MB * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    harden_vips()
    if cache_ops:
        pyvips.cache_set_max(cache_ops)
    ops = parse_pipeline(PIPELINE)
    limits = ImageLimits()

    def job(data: bytes) -> Any:
        return run_pipeline(data, ops, limits=limits, timeout=SERVICE_TIMEOUT)

    return job


def _child_single(args: dict[str, Any]) -> dict[str, Any]:
    """One job on one image in a fresh worker: baseline after set-up, then the peak."""
    job = _worker()
    before = _memory()
    data = Path(args["path"]).read_bytes()
    started = time.perf_counter()
    with ThreadPoolExecutor(SERVICE_CONCURRENCY) as pool:
        result = pool.submit(job, data).result()
    seconds = time.perf_counter() - started
    after = _memory()
    return {
        "baseline_mb": before["rss_mb"],
        "baseline_hwm_mb": before["hwm_mb"],
        "peak_hwm_mb": after["hwm_mb"],
        "peak_maxrss_mb": after["maxrss_mb"],
        "after_mb": after["rss_mb"],
        "input_mb": round(len(data) / 2**20, 2),
        "seconds": round(seconds, 3),
        "output": f"{result.info.width}x{result.info.height}",
    }


def _child_loop(args: dict[str, Any]) -> dict[str, Any]:
    """``count`` jobs over ``paths`` (cycled) with the service's concurrency in flight."""
    job = _worker()
    paths = [Path(p) for p in args["paths"]]
    count = int(args["count"])
    in_flight = int(args.get("in_flight", SERVICE_CONCURRENCY))
    before = _memory()
    rss_after: list[float] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        # As the service with prefetch = concurrency: at most `in_flight` inputs held at once
        # (Executor.map would read all of them up front), fresh bytes per job.
        pending: deque[Future[Any]] = deque()
        for number in range(count):
            if len(pending) == in_flight:
                pending.popleft().result()
                rss_after.append(round(_status_mb("VmRSS"), 1))
            pending.append(pool.submit(job, paths[number % len(paths)].read_bytes()))
        while pending:
            pending.popleft().result()
            rss_after.append(round(_status_mb("VmRSS"), 1))
    seconds = time.perf_counter() - started
    after = _memory()
    return {
        "baseline_mb": before["rss_mb"],
        "rss_after": rss_after,
        "peak_hwm_mb": after["hwm_mb"],
        "peak_maxrss_mb": after["maxrss_mb"],
        "images_per_s": round(count / seconds, 2),
    }


def _child_throughput(args: dict[str, Any]) -> dict[str, Any]:
    """Images per second over ``paths`` with ``pipelines`` jobs in flight (threads)."""
    import pyvips

    job = _worker(cache_ops=VIPS_DEFAULT_CACHE_OPS if args["cache"] else 0)
    datas = [Path(p).read_bytes() for p in args["paths"]]
    pipelines = int(args["pipelines"])
    with ThreadPoolExecutor(pipelines) as pool:
        list(pool.map(job, datas[:2]))  # warm-up: libvips' thread pool, code paths
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        list(pool.map(job, datas))
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
    return {
        "images_per_s": round(len(datas) / seconds, 3),
        "cpu_ms_per_image": round(cpu * 1000 / len(datas), 1),
        "vips_concurrency": pyvips.concurrency_get(),
        "cache_max": pyvips.cache_get_max(),
        "peak_hwm_mb": _memory()["hwm_mb"],
    }


def _child_generate(args: dict[str, Any]) -> dict[str, Any]:
    """Photo-like 24 MP JPEGs (baseline, progressive), plus a varied set if asked."""
    import random

    from benchmarks.corpus import photo_like

    out = Path(args["dir"])
    made: dict[str, Any] = {"big": {}, "varied": []}
    big = photo_like(6000, 4000, seed=1).copy_memory()  # render once, save four times
    for chroma, mode in (("4:2:0", "on"), ("4:4:4", "off")):
        for kind, progressive in (("baseline", False), ("progressive", True)):
            path = out / f"24mp-{kind}-{mode}.jpg"
            big.jpegsave(str(path), Q=90, interlace=progressive, subsample_mode=mode)
            made["big"][f"{kind} {chroma}"] = str(path)
    del big
    rng = random.Random(3)
    sizes = [(1600, 1200), (2048, 1536), (3000, 2000), (4000, 3000), (4608, 3456), (2160, 3840)]
    for number in range(int(args.get("varied", 0))):
        width, height = rng.choice(sizes)
        path = out / f"varied-{number:02d}.jpg"
        image = photo_like(width, height, seed=number + 10)
        image.jpegsave(
            str(path), Q=rng.choice((80, 90)), interlace=number % 2 == 0, subsample_mode="on"
        )
        made["varied"].append(str(path))
    return made


def _child_machine(_args: dict[str, Any]) -> dict[str, Any]:
    import pyvips

    return {
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "pyvips": pyvips.__version__,
        "vips_concurrency_default": pyvips.concurrency_get(),
        "cache_default": pyvips.cache_get_max(),
    }


def _file_facts(args: dict[str, Any]) -> dict[str, Any]:
    import pyvips

    facts = []
    for path in args["paths"]:
        image = pyvips.Image.new_from_file(path)
        fields = image.get_fields()
        facts.append(
            {
                "name": Path(path).name,
                "width": image.width,
                "height": image.height,
                "mb": round(os.path.getsize(path) / 2**20, 2),
                "progressive": bool("interlaced" in fields and image.get("interlaced")),
                "chroma": str(image.get("jpeg-chroma-subsample"))
                if "jpeg-chroma-subsample" in fields
                else "",
            }
        )
    return {"files": facts}


CHILD_TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "single": _child_single,
    "loop": _child_loop,
    "throughput": _child_throughput,
    "generate": _child_generate,
    "machine": _child_machine,
    "facts": _file_facts,
}

# --- the parent side: orchestrate, aggregate, report -----------------------------------


def _run_child(
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


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


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
            runs = [_run_child("single", {"path": path}, env=env) for _ in range(SINGLE_REPEATS)]
            _log(f"single {variant} {label}: {[r['peak_hwm_mb'] for r in runs]} MB")
            peaks = [max(r["peak_hwm_mb"], r["peak_maxrss_mb"]) for r in runs]
            baseline = statistics.median(r["baseline_mb"] for r in runs)
            peak = statistics.median(peaks)
            rows.append(
                [
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
            )
            if label.startswith("MALLOC_ARENA_MAX"):
                ok = max(peaks) < RSS_LIMIT_MB
                passed = passed and ok
                verdicts.append(
                    f"- **{'PASS' if ok else 'FAIL'}**: 24 MP {variant} JPEG thumbnail, peak "
                    f"worker RSS {max(peaks):.1f} MB (worst of {SINGLE_REPEATS}, "
                    f"MALLOC_ARENA_MAX=2 as the services run) "
                    f"{'<' if ok else '>='} {RSS_LIMIT_MB:.0f} MB"
                )
    lines += _table(
        [
            "input",
            "allocator",
            "baseline RSS (MB)",
            "peak VmHWM (MB) [max]",
            "peak ru_maxrss (MB)",
            "job's own peak (MB)",
            "RSS after (MB)",
            "job time (s)",
            "output",
        ],
        rows,
    )
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
        run = _run_child(
            "loop", {"paths": paths, "count": LOOP_IMAGES, "in_flight": in_flight}, env=env
        )
        rss = run["rss_after"]
        _log(f"loop x{in_flight} {label}: {rss[0]} -> {rss[-1]} MB, peak {run['peak_hwm_mb']} MB")
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
    lines += _table(
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


def _measure_tuning(paths: list[str], source: str) -> list[str]:
    configs = [
        (pipelines, threads, cache)
        for pipelines in TUNING_PIPELINES
        for threads in TUNING_VIPS_THREADS
        for cache in (False, True)
    ]
    results: dict[tuple[int, int, bool], list[dict[str, Any]]] = {c: [] for c in configs}
    for _ in range(TUNING_ROUNDS):  # interleaved rounds: drift hits every config alike
        for pipelines, threads, cache in configs:
            run = _run_child(
                "throughput",
                {"paths": paths, "pipelines": pipelines, "cache": cache},
                env={"MALLOC_ARENA_MAX": "2", "VIPS_CONCURRENCY": str(threads)},
            )
            if run["vips_concurrency"] != threads:
                raise RuntimeError(f"VIPS_CONCURRENCY={threads} not applied: {run}")
            results[(pipelines, threads, cache)].append(run)
    rows: list[list[object]] = []
    best_rate: dict[tuple[int, int, bool], float] = {}
    cpu_ms: dict[tuple[int, int, bool], float] = {}
    peak: dict[tuple[int, int, bool], float] = {}
    for config in configs:
        pipelines, threads, cache = config
        runs = results[config]
        rates = [r["images_per_s"] for r in runs]
        best_rate[config] = max(rates)
        cpu_ms[config] = statistics.median(r["cpu_ms_per_image"] for r in runs)
        peak[config] = max(r["peak_hwm_mb"] for r in runs)
        rows.append(
            [
                pipelines,
                threads,
                f"on ({VIPS_DEFAULT_CACHE_OPS} ops)" if cache else "off (0)",
                f"**{best_rate[config]:.2f}**",
                f"{statistics.median(rates):.2f}",
                " / ".join(f"{r:.2f}" for r in rates),
                f"{cpu_ms[config]:.0f}",
                f"{peak[config]:.0f}",
            ]
        )
        _log(f"tuning N={pipelines} k={threads} cache={cache}: {rates} img/s")
    best = max(configs, key=lambda c: best_rate[c])
    service = (SERVICE_CONCURRENCY, os.cpu_count() or 1, False)
    input_mb = round(sum(os.path.getsize(p) for p in paths) / 2**20, 1)
    lines = [
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
        *_table(
            [
                "pipelines N",
                "vips threads k",
                "op cache",
                "images/s (best round)",
                "images/s (median)",
                "rounds",
                "CPU ms/image",
                "peak RSS (MB)",
            ],
            rows,
        ),
        "",
    ]
    spread = statistics.median(
        (max(rates) - min(rates)) / max(rates)
        for rates in ([r["images_per_s"] for r in results[c]] for c in configs)
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
    lines.append(
        f"**Conclusion:** fastest on this {os.cpu_count()}-core machine: {best_text}; "
        f"{service_text} (rounds of one setting differ by {spread:.0%} of the best here, "
        f"load average {os.getloadavg()[0]:.1f} at the end). Operation cache on vs off: "
        f"x{cache_ratio:.2f} throughput, x{cache_cpu:.2f} CPU per image, {cache_mb:+.0f} MB "
        "peak RSS (medians over the N x k settings)."
    )
    return [*lines, ""]


def _facts_table(paths: list[str]) -> list[str]:
    facts = _run_child("facts", {"paths": paths})["files"]
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
    return _table(["file", "size", "MP", "MB", "progressive", "chroma"], rows)


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
    machine = _run_child("machine", {})
    photos = _photos()
    with tempfile.TemporaryDirectory(prefix="imagemesh-bench-") as tmp:
        _log("generating the 24 MP JPEGs" + ("" if photos else " and a varied set"))
        made = _run_child("generate", {"dir": tmp, "varied": 0 if photos else 15})
        if photos:
            corpus, source = photos, f"{len(photos)} real photos in {PHOTO_DIR}"
            corpus_note = f"Real photographs: {len(photos)} JPEGs from {PHOTO_DIR}."
        else:
            corpus, source = made["varied"], f"{len(made['varied'])} generated varied JPEGs"
            corpus_note = (
                f"**No real photographs**: {PHOTO_DIR} is absent or empty "
                "(`make test-deps` installs lomiri-wallpapers-16.04); a generated set of "
                f"{len(made['varied'])} varied-size JPEGs stands in."
            )
        single_lines, passed = _measure_single(made["big"])
        loop_lines = _measure_loop(corpus, source)
        tuning_lines = _measure_tuning(corpus, source)
        facts = _facts_table([*made["big"].values(), *corpus])
    elapsed = time.perf_counter() - started
    report = [
        "# imageproc worker memory and libvips tuning",
        "",
        f"Generated by `make bench` (`python -m benchmarks.memory`) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s.",
        "",
        f"- Machine: {os.cpu_count()} cores (`nproc`), {_cpu_model()}, "
        f"{_mem_total_gb()} GB RAM, {platform.system()} {platform.release()}; "
        f"load average {load_at_start:.1f} at the start (other work on the machine slows "
        "the throughput figures, not the memory ones)",
        f"- Python {platform.python_version()}, libvips {machine['libvips']}, "
        f"pyvips {machine['pyvips']} (libvips default concurrency "
        f"{machine['vips_concurrency_default']}, default cache {machine['cache_default']} ops)",
        f"- Job: `{json.dumps(PIPELINE)}` through `imageproc.operations.run_pipeline` "
        "(metadata stripped by default)",
        f"- {corpus_note}",
        "",
        "**Verdict (issue 3):**",
        "",
        *[line for line in single_lines if line.startswith("- **")],
        "",
        *single_lines,
        *loop_lines,
        *tuning_lines,
        "## Inputs",
        "",
        *facts,
        "",
    ]
    text = "\n".join(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    _log(f"wrote {RESULTS.relative_to(ROOT)} ({'PASS' if passed else 'FAIL'}, {elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
