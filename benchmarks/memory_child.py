"""The child side of `benchmarks.memory`: one fresh worker process per measurement.

`python -m benchmarks.memory --child '{"task": ...}'` runs one of `CHILD_TASKS` here and
prints its result as JSON. Each task sets the process up as imageproc's worker does
(`harden_vips()`, the RLIMIT_AS budget, a thread pool) before it measures. Nothing here
imports pyvips at module level: the parent imports this module for its constants and
must stay small (a child's `ru_maxrss` starts from its parent's RSS).
"""

from __future__ import annotations

import os
import resource
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

PIPELINE: list[dict[str, Any]] = [
    {"op": "thumbnail", "width": 512, "height": 512},
    {"op": "convert", "format": "jpeg", "quality": 80},
]
# What imageproc's defaults are on this machine (Settings): one pipeline thread per core,
# a 60 s deadline per pipeline, a 3072 MB RLIMIT_AS budget.
SERVICE_CONCURRENCY = os.cpu_count() or 1
SERVICE_TIMEOUT = 60.0
SERVICE_MEMORY_LIMIT_MB = 3072
# libvips' own operation-cache default (harden_vips sets it to 0).
VIPS_DEFAULT_CACHE_OPS = 100


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
