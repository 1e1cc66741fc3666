"""What the benchmark reads from /proc: CPU time, process trees, resident memory.

CPU of a process tree is counted so that none goes missing when processes exit: each
live process contributes its own CPU (utime + stime) *and* the CPU of the children it has
reaped (cutime + cstime; the kernel adds a child's own and its reaped descendants' time to
the parent's when the parent waits for it). imageproc's workers are killed and replaced
(deadline, memory, recycling); the multiprocessing forkserver that forked them reaps them,
so their CPU moves into the forkserver's cutime and stays counted. A process that exits
between two readings is accounted for as long as the process that reaps it is in the
tree; the tree is read again at the end of every run, so new processes count too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True, slots=True)
class Stat:
    """The fields of /proc/<pid>/stat the benchmark uses (CPU in seconds)."""

    ppid: int
    own: float
    """utime + stime."""
    reaped: float
    """cutime + cstime: children (and their descendants) this process has waited for."""


def parse_stat(text: str) -> Stat:
    """/proc/<pid>/stat's text; the command name (field 2) may hold spaces and ')'."""
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    ticks = [int(value) for value in fields[11:15]]
    own, reaped = ticks[0] + ticks[1], ticks[2] + ticks[3]
    return Stat(int(fields[1]), own / CLOCK_TICKS, reaped / CLOCK_TICKS)


def read_stat(pid: int) -> Stat | None:
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def cpu_seconds(pid: int) -> float:
    """CPU of a live process and of the children it has reaped (0 when it is gone)."""
    stat = read_stat(pid)
    return 0.0 if stat is None else stat.own + stat.reaped


def process_table() -> dict[int, int]:
    """pid -> parent pid of every process, from one pass over /proc."""
    parents: dict[int, int] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                stat = read_stat(int(entry.name))
                if stat is not None:
                    parents[int(entry.name)] = stat.ppid
    return parents


def descendants(roots: Iterable[int], parents: Mapping[int, int] | None = None) -> list[int]:
    """The live descendants of `roots` (not the roots themselves)."""
    table = process_table() if parents is None else parents
    kids: dict[int, list[int]] = {}
    for child, parent in table.items():
        kids.setdefault(parent, []).append(child)
    found: list[int] = []
    frontier = list(roots)
    while frontier:
        below = kids.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def children(pid: int) -> list[int]:
    """The live descendants of a process."""
    return descendants([pid])


def cpu_of(groups: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """CPU-seconds by group: own + reaped children of every listed live process."""
    return {name: sum(cpu_seconds(pid) for pid in set(pids)) for name, pids in groups.items()}


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """After minus before, by group (a group only in `before` counts as gone: 0 after)."""
    names = [*after, *(name for name in before if name not in after)]
    return {name: after.get(name, 0.0) - before.get(name, 0.0) for name in names}


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set since it started (0 when it is gone)."""
    return _status_kb(pid, "VmHWM:") / 1024


def rss_kb(pid: int) -> int:
    """Resident set now (statm: the cheapest read), 0 when the process is gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them, so
    that a sum over processes counts each page once (~1.5 ms a read: sample it rarely)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0
