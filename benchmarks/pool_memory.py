"""imageproc's memory as a whole: its worker pool over hundreds of mixed jobs.

Run from the repository root: ``.venv/bin/python -m benchmarks.pool_memory`` (no stack
needed). Writes ``benchmarks/results/pool-memory.md`` and prints it.

This process plays imageproc's parent: it imports what the service imports
(``imageproc.app``), builds the pool exactly as the service does (``app._worker_pool``
with the default ``Settings``: ``IMAGEPROC_CONCURRENCY`` workers, an equal share of
``IMAGEPROC_MEMORY_LIMIT_MB`` each) under ``MALLOC_ARENA_MAX=2`` as the services run, and
keeps ``concurrency`` jobs in flight (the RPC prefetch), each input read fresh from disk
as a message would arrive. A thread samples every process of the service every
``--interval`` seconds: this parent, the forkserver and each worker, their resident
memory (``VmRSS``) and proportional share (``Pss``: pages shared copy-on-write between the
forkserver and its workers counted once, as the kernel charges them).

Parent CPU per job is this process's CPU time (every thread: event loop, pipe I/O,
watchdog) less the sampler thread's own, over the jobs: the IPC and bookkeeping outside
the pipelines, which run in the workers.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "pool-memory.md"
CACHE = ROOT / ".bench" / "pool-memory"
PHOTO_GLOBS = ("/usr/share/backgrounds/*.jpg", "/usr/share/wallpapers/*/contents/images/*.jpg")
#: generated photo-like progressive JPEGs: name -> (width, height)
GENERATED = {"gen-24mp-progressive.jpg": (6000, 4000), "gen-12mp-progressive.jpg": (4240, 2832)}
#: one job in this many is on the 24 MP progressive, one in this many on the 12 MP one
BIG_EVERY = {"gen-24mp-progressive.jpg": 12, "gen-12mp-progressive.jpg": 10}
PIPELINES: dict[str, list[dict[str, Any]]] = {
    "fit512-jpeg": [
        {"op": "thumbnail", "width": 512, "height": 512},
        {"op": "convert", "format": "jpeg", "quality": 80},
    ],
    "webp1024": [
        {"op": "thumbnail", "width": 1024, "height": 1024},
        {"op": "convert", "format": "webp", "quality": 75},
    ],
    "png2048": [
        {"op": "thumbnail", "width": 2048, "height": 2048},
        {"op": "convert", "format": "png"},
    ],
    "dither-png": [{"op": "dither", "method": "floyd-steinberg"}],
    "blur-jpeg": [{"op": "blur", "sigma": 4}, {"op": "convert", "format": "jpeg"}],
}
#: how often each pipeline is picked
WEIGHTS = {"fit512-jpeg": 4, "webp1024": 3, "png2048": 1, "dither-png": 1, "blur-jpeg": 1}


# --- the inputs -----------------------------------------------------------------------


def _generate(folder: Path) -> None:
    """The generated JPEGs, made in a child process so that this one stays the size of
    imageproc's parent."""
    folder.mkdir(parents=True, exist_ok=True)
    missing = {n: s for n, s in GENERATED.items() if not (folder / n).exists()}
    if not missing:
        return
    code = (
        "import sys, json; from benchmarks.corpus import photo_like\n"
        "for name, (w, h) in json.loads(sys.argv[1]).items():\n"
        "    photo_like(w, h, seed=len(name)).jpegsave(sys.argv[2] + '/' + name, Q=90,"
        " interlace=True, subsample_mode='on')\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, json.dumps(missing), str(folder)], cwd=ROOT, check=True
    )


def _sizes(paths: Sequence[Path]) -> dict[str, tuple[int, int, bool]]:
    """name -> (width, height, progressive), read in a child process (pyvips)."""
    code = (
        "import sys, json, pyvips\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    i = pyvips.Image.new_from_file(p)\n"
        "    out[p] = (i.width, i.height, bool('interlaced' in i.get_fields()))\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, paths)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return {k: (int(v[0]), int(v[1]), bool(v[2])) for k, v in json.loads(proc.stdout).items()}


@dataclass(frozen=True, slots=True)
class Work:
    path: Path
    pipeline: str

    @property
    def label(self) -> str:
        return f"{self.pipeline} {self.path.name}"


def plan(jobs: int, photos: Sequence[Path], generated: dict[str, Path], seed: int) -> list[Work]:
    """A reproducible mix: mostly real photos, every 12th job the 24 MP progressive, every
    10th the 12 MP progressive, pipelines drawn by weight."""
    rng = random.Random(seed)
    names = list(WEIGHTS)
    weights = [WEIGHTS[n] for n in names]
    out = []
    for number in range(jobs):
        path = rng.choice(photos)
        for name, every in BIG_EVERY.items():
            if number % every == every // 2:
                path = generated[name]
        out.append(Work(path, rng.choices(names, weights)[0]))
    return out


# --- sampling ---------------------------------------------------------------------------


def _kb(path: str, field_name: bytes) -> int:
    try:
        with open(path, "rb") as file:
            for line in file:
                if line.startswith(field_name):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class Sampler:
    """Samples the service's processes every ``interval`` seconds in a thread."""

    pids: Any
    """() -> {role: pid} now (workers change as they are recycled)."""
    in_flight: dict[int, str]
    interval: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    cpu_seconds: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        return thread

    def stop(self, thread: threading.Thread) -> None:
        self._stop.set()
        thread.join()

    def take(self) -> dict[str, Any]:
        roles = self.pids()
        rss = {r: _kb(f"/proc/{p}/status", b"VmRSS:") / 1024 for r, p in roles.items()}
        pss = {r: _kb(f"/proc/{p}/smaps_rollup", b"Pss:") / 1024 for r, p in roles.items()}
        return {
            "t": time.monotonic(),
            "rss": rss,
            "pss": pss,
            "jobs": sorted(self.in_flight.values()),
        }

    def _run(self) -> None:
        started = time.thread_time()
        while not self._stop.wait(self.interval):
            try:
                self.samples.append(self.take())
            except RuntimeError:  # the pool's set changed while read: next time
                continue
        self.cpu_seconds = time.thread_time() - started


# --- the run ------------------------------------------------------------------------------


async def _drive(pool: Any, works: Sequence[Work], in_flight: dict[int, str]) -> list[str]:
    """Keep ``concurrency`` jobs in flight, as the RPC prefetch does; the failures' codes."""
    from imageproc.operations import ProcessingError
    from pipeline import ImageLimits, parse_pipeline

    parsed = {name: parse_pipeline(ops) for name, ops in PIPELINES.items()}
    limits = ImageLimits()
    queue = list(enumerate(works))
    failures: list[str] = []

    async def lane() -> None:
        while queue:
            number, work = queue.pop(0)
            in_flight[number] = work.label
            try:
                await pool.run(work.path.read_bytes(), parsed[work.pipeline], limits=limits)
            except ProcessingError as exc:
                failures.append(f"{work.label}: {exc.code}")
            finally:
                del in_flight[number]

    await asyncio.gather(*(lane() for _ in range(pool.config.workers)))
    return failures


def _forkserver_pid() -> int:
    from multiprocessing import forkserver

    return int(getattr(forkserver._forkserver, "_forkserver_pid", 0) or 0)


async def measure(works: Sequence[Work], interval: float, admission_mb: int) -> dict[str, Any]:
    from imageproc.app import _worker_pool
    from imageproc.settings import Settings

    values: dict[str, Any] = {"rabbitmq_password": "unused"}
    if "imageproc_admission_mb" in Settings.model_fields:  # not before admission existed
        values["imageproc_admission_mb"] = admission_mb
    settings = Settings.model_validate(values)
    in_flight: dict[int, str] = {}
    async with _worker_pool(settings) as pool:

        def pids() -> dict[str, int]:
            roles = {"parent": os.getpid(), "forkserver": _forkserver_pid()}
            roles |= {f"worker{n}": pid for n, pid in enumerate(pool.pids())}
            return roles

        sampler = Sampler(pids, in_flight, interval)
        await asyncio.sleep(1.0)  # let the fresh workers settle
        idle = sampler.take()
        thread = sampler.start()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        failures = await _drive(pool, works, in_flight)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        sampler.stop(thread)
        await asyncio.sleep(0.2)  # the last job's worker trims its heap after answering
        after = sampler.take()
        config = pool.config
        budget = getattr(pool, "budget", None)
        kills, waited = dict(pool.kills), budget.waited if budget else 0
    return {
        "admission_mb": admission_mb,
        "concurrency": config.workers,
        "memory_share_mb": config.memory_bytes // 2**20,
        "vips_threads": config.vips_threads,
        "jobs": len(works),
        "seconds": wall,
        "parent_cpu_ms_per_job": (cpu - sampler.cpu_seconds) * 1000 / len(works),
        "sampler_cpu_s": sampler.cpu_seconds,
        "idle": idle,
        "after": after,
        "samples": sampler.samples,
        "failures": failures,
        "kills": kills,
        "waited": waited,
    }


# --- the report ---------------------------------------------------------------------------


def _peak(samples: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    total = max(samples, key=lambda s: sum(s[kind].values()))
    single = max(samples, key=lambda s: max(s[kind].values()))
    role = max(single[kind], key=single[kind].get)
    return {
        "sum": round(sum(total[kind].values()), 1),
        "sum_at": {r: round(v, 1) for r, v in total[kind].items()},
        "sum_jobs": total["jobs"],
        "single": round(single[kind][role], 1),
        "single_role": role,
        "single_jobs": single["jobs"],
    }


def _by_role(sample: dict[str, Any], kind: str) -> str:
    values = sample[kind]
    parts = [f"{role} {value:.1f}" for role, value in values.items()]
    return f"{sum(values.values()):.1f} ({', '.join(parts)})"


def _top(samples: list[dict[str, Any]], kind: str, count: int = 5) -> list[str]:
    """The highest sums, one per set of jobs in flight, with those jobs."""
    seen: set[tuple[str, ...]] = set()
    lines = []
    for sample in sorted(samples, key=lambda s: -sum(s[kind].values())):
        jobs = tuple(sample["jobs"])
        if jobs in seen:
            continue
        seen.add(jobs)
        lines.append(f"{sum(sample[kind].values()):.0f} MB: {' + '.join(jobs) or 'idle'}")
        if len(lines) == count:
            break
    return lines


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    samples = result["samples"]
    return {
        "admission_mb": result["admission_mb"],
        "concurrency": result["concurrency"],
        "memory_share_mb": result["memory_share_mb"],
        "vips_threads": result["vips_threads"],
        "jobs": result["jobs"],
        "jobs_per_s": round(result["jobs"] / result["seconds"], 2),
        "parent_cpu_ms_per_job": round(result["parent_cpu_ms_per_job"], 2),
        "samples": len(samples),
        "rss": _peak(samples, "rss"),
        "pss": _peak(samples, "pss"),
        "top_pss": _top(samples, "pss"),
        "idle_rss": _by_role(result["idle"], "rss"),
        "idle_pss": _by_role(result["idle"], "pss"),
        "idle_pss_mb": round(sum(result["idle"]["pss"].values()), 1),
        "idle_rss_mb": round(sum(result["idle"]["rss"].values()), 1),
        "after_rss": _by_role(result["after"], "rss"),
        "after_pss": _by_role(result["after"], "pss"),
        "waited": result["waited"],
        "failures": result["failures"],
        "kills": result["kills"],
    }


def _child(args: argparse.Namespace) -> None:
    """One run, as imageproc's parent, in this fresh process; the summary on stdout."""
    photos = sorted(Path(p) for pattern in PHOTO_GLOBS for p in glob.glob(pattern))
    generated = {name: CACHE / name for name in GENERATED}
    works = plan(args.jobs, photos, generated, args.seed)
    result = asyncio.run(measure(works, args.interval, args.child))
    print(json.dumps(summarise(result)))


def _run(admission_mb: int, args: argparse.Namespace) -> dict[str, Any]:
    # As the services run (tools/stack), and without the caller's own MALLOC_ settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["MALLOC_ARENA_MAX"] = "2"
    command = [sys.executable, "-m", "benchmarks.pool_memory", "--child", str(admission_mb)]
    command += [
        "--jobs",
        str(args.jobs),
        "--interval",
        str(args.interval),
        "--seed",
        str(args.seed),
    ]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"run failed:\n{proc.stderr[-3000:]}")
    summary: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary


def report(
    runs: list[dict[str, Any]], sizes: dict[str, tuple[int, int, bool]], args: Any, seconds: float
) -> str:
    from benchmarks.pool_report import report as render

    return render(runs, sizes, args, seconds)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--admission", default="0,96,128", help="IMAGEPROC_ADMISSION_MB values to compare"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rerender", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(args)
        return
    _generate(CACHE)
    started = time.perf_counter()
    runs = []
    if args.rerender:  # the report again from a run's JSON (no measuring)
        runs = json.loads(args.out.with_suffix(".json").read_text())
    for number in range(0 if args.rerender else args.rounds):
        for admission_mb in (int(v) for v in args.admission.split(",")):
            print(f"round {number + 1}, admission {admission_mb} MB", file=sys.stderr)
            runs.append({"round": number + 1, **_run(admission_mb, args)})
    photos = sorted(Path(p) for pattern in PHOTO_GLOBS for p in glob.glob(pattern))
    sizes = _sizes([*photos, *(CACHE / name for name in GENERATED)])
    text = report(runs, sizes, args, time.perf_counter() - started)
    args.out.write_text(text)
    if not args.rerender:
        args.out.with_suffix(".json").write_text(json.dumps(runs, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
