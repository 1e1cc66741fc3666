"""The local stack as the benchmark sees it: (re)starting it, its processes by group,
their memory sampled in the background, its queues and its provenance audit.

Process groups: each service's instances together (the `tools/stack supervise` process and
everything under it: the service, and for imageproc its forkserver, resource tracker and
worker processes), RabbitMQ (beam.smp and its helpers, with epmd), the CouchDB-compatible
server (PouchDB Server) and the S3 server (moto).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.procfs import descendants, peak_rss_mb, process_table, pss_kb, rss_kb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import stack  # noqa: E402  (tools/stack: the local stack)

#: The benchmark's stack: the upload rate limits would refuse a benchmark's burst, and
#: the soak's one client follows every job in flight on a stream of its own (one principal
#: standing for many users): at 20 streams per principal it met 429 + `Retry-After: 5`,
#: which showed as p99 steps of 5, 10 and 15 s that were the client's, not the mesh's.
STACK_SETTINGS = {
    "UPLOAD_RATE_LIMIT_PER_MINUTE": "0",
    "UPLOAD_API_RATE_LIMIT_PER_MINUTE": "0",
    "UPLOAD_MAX_STREAMS_PER_PRINCIPAL": "1000",
}
SERVICES = ("upload", "imageproc_runner", "imageproc", "provenancedb")
INFRA = ("rabbitmq", "couchdb", "s3")
#: infrastructure component -> the group it is counted in
INFRA_GROUP = {"epmd": "rabbitmq", "rabbitmq": "rabbitmq", "couchdb": "couchdb", "s3": "s3"}
GROUPS = SERVICES + INFRA


def stack_up(replicas: int) -> None:
    """(Re)start the local stack's services with the benchmark's settings (the
    infrastructure keeps running, or is started)."""
    config = stack.load_config()
    with stack.stack_lock(config.paths):
        # Services started with other settings (a `make up`) would keep running otherwise.
        stack.stop_services(config)
    env = {**os.environ, **STACK_SETTINGS, "IMAGEPROC_REPLICAS": str(replicas)}
    env.pop("RUNNER_REPLICAS", None)
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "tools" / "stack"), "up"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def stack_down() -> None:
    """Stop the services the benchmark started (not the infrastructure)."""
    config = stack.load_config()
    with stack.stack_lock(config.paths):
        stack.stop_services(config)


def apt_install(packages: Sequence[str]) -> None:
    """Debian packages, as `make deps` installs them (the corpus's photographs)."""
    stack.apt_install(packages)


def stack_upload_url() -> str:
    config = stack.load_config()
    return f"http://127.0.0.1:{config['UPLOAD_PORT']}"


def stack_setting(name: str) -> str:
    """One of the local stack's settings (`.env`, else `.env.example`)."""
    return str(stack.load_config()[name])


def group_roots() -> dict[str, list[int]]:
    """The top process of every group member: supervisors and infrastructure servers."""
    config = stack.load_config()
    roots: dict[str, list[int]] = defaultdict(list)
    for name in stack.known_instances(config):
        supervisor = stack.service_component(config, name).pid()
        if supervisor is not None:
            roots[stack.service_of(name)].append(supervisor)
    for component in stack.infra_components(config):
        pid = component.pid()
        if pid is not None and component.name in INFRA_GROUP:
            roots[INFRA_GROUP[component.name]].append(pid)
    return dict(roots)


def expand(roots: Mapping[str, list[int]]) -> dict[str, list[int]]:
    """Every live process of every group (one pass over /proc)."""
    table = process_table()
    return {name: [*pids, *descendants(pids, table)] for name, pids in roots.items()}


def process_groups() -> dict[str, list[int]]:
    """The stack's processes by group, read now."""
    return expand(group_roots())


def instance_peaks() -> dict[str, float]:
    """Peak RSS (MB, VmHWM) of the largest live process of each service instance."""
    config = stack.load_config()
    peaks: dict[str, float] = {}
    for name in stack.known_instances(config):
        supervisor = stack.service_component(config, name).pid()
        if supervisor is not None:
            pids = [supervisor, *descendants([supervisor])]
            peaks[name] = max((peak_rss_mb(pid) for pid in pids), default=0.0)
    return peaks


# --- memory in the background ---------------------------------------------------------


@dataclass
class MemoryPeaks:
    """A group's memory over a sampled period, in MB."""

    sum_rss: float = 0.0
    """Peak of the sum of VmRSS over the group's processes (shared pages counted in
    every process that maps them)."""
    sum_pss: float = 0.0
    """Peak of the sum of Pss (shared pages counted once; sampled once a second)."""
    single: float = 0.0
    """Largest single process: its VmHWM, or the largest VmRSS sampled."""


@dataclass
class RssSampler:
    """A thread summing each group's resident memory every `interval` seconds; the tree is
    read again every `refresh` seconds (imageproc replaces its workers), when each
    process's VmHWM and (for `pss_groups`) Pss are read too. `series` keeps one point per
    `every` seconds for trends: (seconds since start, {group: sum RSS MB})."""

    roots: dict[str, list[int]]
    interval: float = 0.2
    refresh: float = 1.0
    every: float = 2.0
    pss_groups: tuple[str, ...] = ("imageproc",)
    peaks: dict[str, MemoryPeaks] = field(default_factory=lambda: defaultdict(MemoryPeaks))
    series: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        groups: dict[str, list[int]] = {}
        next_refresh = next_point = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                groups = expand(self.roots)
                self._slow(groups)
                next_refresh = now + self.refresh
            sums = self._fast(groups)
            if now >= next_point:
                self.series.append((round(now - self.started, 2), sums))
                next_point = now + self.every
            self._stop.wait(self.interval)

    def _fast(self, groups: Mapping[str, list[int]]) -> dict[str, float]:
        sums: dict[str, float] = {}
        for name, pids in groups.items():
            values = [rss_kb(pid) / 1024 for pid in pids]
            sums[name] = round(sum(values), 1)
            peak = self.peaks[name]
            peak.sum_rss = max(peak.sum_rss, sums[name])
            peak.single = max(peak.single, max(values, default=0.0))
        return sums

    def _slow(self, groups: Mapping[str, list[int]]) -> None:
        for name, pids in groups.items():
            peak = self.peaks[name]
            peak.single = max(peak.single, max((peak_rss_mb(pid) for pid in pids), default=0.0))
            if name in self.pss_groups:
                peak.sum_pss = max(peak.sum_pss, sum(pss_kb(pid) for pid in pids) / 1024)


# --- queues and the audit ----------------------------------------------------------------


def queue_depths() -> dict[str, int]:
    """Messages (ready + unacknowledged) per queue of the stack's vhost, from RabbitMQ's
    management API with the stack's administrator (tools/stack's settings)."""
    config = stack.load_config()
    vhost = urllib.parse.quote(config["RABBITMQ_VHOST"], safe="")
    base = f"http://127.0.0.1:{config.rabbitmq_management_port}/api"
    answer = stack.http("GET", f"{base}/queues/{vhost}", auth=config.rabbitmq_admin)
    if answer.status != 200:
        raise RuntimeError(f"RabbitMQ management: HTTP {answer.status}")
    return {q["name"]: int(q.get("messages", 0)) for q in answer.json()}


def is_parking(queue: str) -> bool:
    return queue.endswith(".parking")


def is_work_queue(queue: str) -> bool:
    """Durable work and retry-delay queues; not parking lots, nor a connection's own
    reply and live-update queues (exclusive, named after the connection)."""
    return not is_parking(queue) and not queue.startswith(("rpc-reply.", "live.", "amq."))


def run_audit(timeout: float = 900.0) -> dict[str, Any]:
    """`tools/stack audit --json` (python -m provenancedb.audit with the stack's
    settings): its report, with "exit" (0 no gaps, 1 gaps, 2 could not run)."""
    done = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "python"),
            str(ROOT / "tools" / "stack"),
            "audit",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        report = {"error": (done.stderr or done.stdout).strip()[-500:]}
    report["exit"] = done.returncode
    return report
