"""The engines under test, each doing the same three jobs on the same files.

- **raw pyvips**: the image calls imageproc makes (libvips, and for a leading thumbnail
  of a JPEG Pillow's DCT-scaled decode), in a pool of worker processes, with no messaging
  and no storage: the limit on this machine.
- **thumbor 7** on loopback (`--processes N`, file loader, nothing stored or cached), with
  `Connection: close` so that every process gets work.
- **imagemesh** end to end through its HTTP API: upload, the mesh, S3, provenance, then
  the result downloaded.

A run sends every file of the corpus once, `concurrency` at a time, and records for each
the latency (request to last byte) and the output; CPU time comes from /proc. raw pyvips
and imagemesh get every file with unique bytes (`benchmarks.unique`: a JPEG comment);
thumbor reads the file itself, and with no storage or result storage it has nothing
to reuse, so the same bytes are a fair comparison there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from benchmarks.procfs import children, cpu_delta, cpu_of
from benchmarks.unique import unique_bytes

ROOT = Path(__file__).resolve().parent.parent
#: Run.cpu key: every stack process but imageproc's (the overhead target's sum)
STACK_BUT_IMAGEPROC = "all but imageproc"


@dataclass(frozen=True)
class Job:
    """One of the benchmark's jobs, as each engine spells it."""

    name: str
    title: str
    pipeline: list[dict[str, Any]]
    #: thumbor's URL between /unsafe/ and the file name; None: thumbor cannot do it
    thumbor: str | None
    #: output's longest side when the job resizes (for quality); None: full size
    fit: int | None


JOBS = (
    Job(
        "fit512",
        "fit in 512x512, JPEG q80, strip",
        [
            {"op": "thumbnail", "width": 512, "height": 512},
            {"op": "convert", "format": "jpeg", "quality": 80},
        ],
        "fit-in/512x512/filters:quality(80):strip_exif():strip_icc()",
        512,
    ),
    Job(
        "dither",
        "Floyd-Steinberg dither to black and white, PNG",
        [{"op": "dither", "method": "floyd-steinberg"}],
        None,  # thumbor has no dithering filter
        None,
    ),
    Job(
        "webp1024",
        "WebP q75 at 1024 px, strip",
        [
            {"op": "thumbnail", "width": 1024, "height": 1024},
            {"op": "convert", "format": "webp", "quality": 75},
        ],
        "fit-in/1024x1024/filters:format(webp):quality(75):strip_exif():strip_icc()",
        1024,
    ),
)
JOBS_BY_NAME = {job.name: job for job in JOBS}


@dataclass
class Result:
    """One file through one engine."""

    name: str
    latency: float
    size: int
    output: bytes | None = None  # kept only when asked (for quality)


class Engine(Protocol):
    async def run(self, job: Job, names: Sequence[str], concurrency: int, keep: bool) -> Run:
        """Every file of `names` through the job, `concurrency` at a time."""
        ...


@dataclass
class Run:
    engine: str
    job: str
    concurrency: int
    wall: float
    results: list[Result]
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU-seconds during the run, by process group ("engine" = the engine's own)."""
    failures: list[str] = field(default_factory=list)


async def _closed_loop(
    names: Sequence[str],
    concurrency: int,
    one: Callable[[str], Awaitable[Result]],
) -> tuple[list[Result], list[str], float]:
    """Each of `concurrency` workers takes the next file as soon as it is done."""
    queue = list(reversed(names))
    results: list[Result] = []
    failures: list[str] = []

    async def worker() -> None:
        while queue:
            name = queue.pop()
            try:
                results.append(await one(name))
            except Exception as exc:
                failures.append(f"{name}: {exc!r}"[:300])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, failures, time.perf_counter() - started


# --- raw pyvips ----------------------------------------------------------------------


def _raw_init(threads: int) -> None:
    import pyvips

    from pipeline import harden_vips

    harden_vips()  # as the service: untrusted loaders blocked, no operation cache
    pyvips.concurrency_set(threads)  # as the service: the cores shared out between workers


def raw_process(job_name: str, path: str, keep: bool) -> tuple[float, float, int, bytes | None]:
    """One file in a worker: (cpu s, wall s, output bytes, output if `keep`)."""
    cpu, wall = time.process_time(), time.perf_counter()
    data = unique_bytes(Path(path).read_bytes())  # as imagemesh gets them (no reuse)
    output = raw_pipeline(job_name, data)
    return (
        time.process_time() - cpu,
        time.perf_counter() - wall,
        len(output),
        output if keep else None,
    )


def raw_pipeline(job_name: str, data: bytes) -> bytes:
    """The job in plain pyvips calls: what imageproc's engine does for it, minus its checks,
    probes and bookkeeping."""
    import pyvips

    if job_name == "dither":
        from imageproc._dither import floyd_steinberg

        image = pyvips.Image.new_from_buffer(data, "", access="sequential").autorot()
        grey = image.colourspace("b-w")[0]
        return bytes(floyd_steinberg(grey).pngsave_buffer(bitdepth=1, keep="none"))
    from imageproc.ops.geometry import thumbnail_from_buffer
    from pipeline.geometry import Thumbnail

    side = JOBS_BY_NAME[job_name].fit or 0
    # The same libvips calls as imageproc makes for a leading thumbnail.
    image = thumbnail_from_buffer(data, Thumbnail(width=side, height=side), "")
    if job_name == "fit512":
        return bytes(image.jpegsave_buffer(Q=80, keep="none"))
    return bytes(image.webpsave_buffer(Q=75, keep="none"))


class RawPool:
    """`processes` fresh worker processes (spawned, so nothing is inherited)."""

    def __init__(self, folder: Path, processes: int) -> None:
        self.folder = folder
        self.processes = processes
        threads = max(1, (os.cpu_count() or 1) // processes)
        self._pool = ProcessPoolExecutor(
            processes, mp_context=get_context("spawn"), initializer=_raw_init, initargs=(threads,)
        )

    def warm(self) -> None:
        list(self._pool.map(time.sleep, [0.01] * self.processes))

    def close(self) -> None:
        self._pool.shutdown()

    async def run(self, job: Job, names: Sequence[str], concurrency: int, keep: bool) -> Run:
        """`concurrency` is the pool's size: one file per process at a time."""
        loop = asyncio.get_running_loop()
        cpu_total = 0.0

        async def one(name: str) -> Result:
            nonlocal cpu_total
            cpu, wall, size, output = await loop.run_in_executor(
                self._pool, raw_process, job.name, str(self.folder / name), keep
            )
            cpu_total += cpu
            return Result(name, wall, size, output)

        results, failures, wall = await _closed_loop(names, self.processes, one)
        return Run(
            f"raw pyvips x{self.processes}",
            job.name,
            self.processes,
            wall,
            results,
            {"engine": cpu_total},
            failures,
        )


# --- thumbor ---------------------------------------------------------------------------

THUMBOR_REQUIREMENTS = Path(__file__).resolve().parent / "thumbor-requirements.txt"
THUMBOR_CONF = """\
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {root!r}
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = None
RESULT_STORAGE_STORES_UNSAFE = False
ALLOW_UNSAFE_URL = True
ENGINE = 'thumbor.engines.pil'
QUALITY = 80
WEBP_QUALITY = None
RESPECT_ORIENTATION = True
PRESERVE_EXIF_INFO = False
AUTO_WEBP = False
MAX_WIDTH = 0
MAX_HEIGHT = 0
"""


def install_thumbor(venv: Path) -> Path:
    """A virtualenv of its own with thumbor (pinned); returns its `thumbor` command."""
    command = venv / "bin" / "thumbor"
    marker = venv / ".requirements"
    wanted = THUMBOR_REQUIREMENTS.read_text()
    if command.exists() and marker.exists() and marker.read_text() == wanted:
        return command
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(THUMBOR_REQUIREMENTS)],
        check=True,
    )
    marker.write_text(wanted)
    return command


class Thumbor:
    """A thumbor server with `processes` processes on a loopback port."""

    def __init__(self, command: Path, folder: Path, work: Path, port: int, processes: int):
        self.url = f"http://127.0.0.1:{port}"
        self.processes = processes
        conf = work / "thumbor.conf"
        conf.write_text(THUMBOR_CONF.format(root=str(folder)))
        self._log = (work / "thumbor.log").open("ab")
        self._proc = subprocess.Popen(
            [
                *(str(command), "--ip", "127.0.0.1", "--port", str(port), "--conf", str(conf)),
                *("--processes", str(processes), "--log-level", "error"),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def pids(self) -> list[int]:
        return [self._proc.pid, *children(self._proc.pid)]

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"thumbor exited ({self._proc.returncode})")
                try:
                    async with http.get(f"{self.url}/healthcheck") as response:
                        if response.status == 200 and len(self.pids()) > self.processes:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"thumbor not ready in {timeout:.0f} s")
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        workers = children(self._proc.pid)  # before the parent goes: then they are init's
        self._proc.terminate()
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._log.close()

    async def run(self, job: Job, names: Sequence[str], concurrency: int, keep: bool) -> Run:
        assert job.thumbor is not None
        before = cpu_of({"engine": self.pids()})
        # Connection: close: with keep-alive one process often gets every request.
        connector = aiohttp.TCPConnector(force_close=True, limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def one(name: str) -> Result:
                started = time.perf_counter()
                async with http.get(f"{self.url}/unsafe/{job.thumbor}/{name}") as response:
                    body = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}")
                return Result(
                    name, time.perf_counter() - started, len(body), body if keep else None
                )

            results, failures, wall = await _closed_loop(names, concurrency, one)
        cpu = cpu_delta(before, cpu_of({"engine": self.pids()}))
        return Run(
            f"thumbor x{self.processes}", job.name, concurrency, wall, results, cpu, failures
        )


# --- imagemesh -------------------------------------------------------------------------


class Imagemesh:
    """The local stack's upload API, and its processes for CPU and memory.

    Every job's input is made unique (`benchmarks.unique`) so that the mesh's reuse of an
    earlier identical job's output never answers in place of the work. CPU by process
    group is read from /proc before and after each run, with the process tree read again
    at the end (workers replaced meanwhile are counted, see `benchmarks.procfs`); the
    benchmark client's own CPU (`getrusage`) is recorded as "client"."""

    def __init__(
        self, url: str, folder: Path, groups: Callable[[], dict[str, list[int]]], label: str
    ) -> None:
        self.url = url
        self.folder = folder
        self.groups = groups
        self.label = label

    async def run(self, job: Job, names: Sequence[str], concurrency: int, keep: bool) -> Run:
        from imagemesh_cli.api import ApiClient

        files = {name: (self.folder / name).read_bytes() for name in names}
        before = cpu_of(self.groups())
        client_before = client_cpu()
        async with ApiClient(self.url, retry_for=60) as client:

            async def one(name: str) -> Result:
                started = time.perf_counter()
                job_id, status = await submit_and_follow(
                    client, unique_bytes(files[name]), name, job.pipeline
                )
                if status.get("status") != "succeeded":
                    raise RuntimeError(f"job {job_id} {status.get('status')}")
                body, _ = await client.result(job_id)
                return Result(
                    name, time.perf_counter() - started, len(body), body if keep else None
                )

            results, failures, wall = await _closed_loop(names, concurrency, one)
        cpu = cpu_delta(before, cpu_of(self.groups()))
        cpu[STACK_BUT_IMAGEPROC] = sum(v for k, v in cpu.items() if k != "imageproc")
        cpu["client"] = client_cpu() - client_before
        return Run(self.label, job.name, concurrency, wall, results, cpu, failures)


def client_cpu() -> float:
    """This benchmark process's own CPU-seconds (all its threads; not its children)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def submit_and_follow(
    client: Any, data: bytes, name: str, pipeline: list[dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """Submit one image and follow its job to its final status: (job id, final job)."""
    from imagemesh_cli.follow import StatusChanged, follow

    accepted = await client.submit(data, name, pipeline)
    final: dict[str, Any] = {"status": "unknown"}
    async for update in follow(client, accepted["id"]):
        if isinstance(update, StatusChanged):
            final = update.job
    return str(accepted["id"]), final
