"""/proc readings: a process tree's CPU keeps what its exited children used."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.procfs import cpu_delta, cpu_of, descendants, parse_stat, read_stat, rss_kb

BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"


def test_parse_stat_reads_past_a_command_name_with_spaces_and_parentheses() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S", "42"] + ["0"] * 9 + [str(ticks), str(ticks), str(2 * ticks), "0"] + ["0"] * 30
    stat = parse_stat("123 (a (b) c) " + " ".join(fields))
    assert (stat.ppid, stat.own, stat.reaped) == (42, 2.0, 2.0)


def test_cpu_of_counts_a_reaped_child() -> None:
    """The child is gone when read again: its CPU is in this process's cutime."""
    me = {"self": [os.getpid()]}
    own_before = read_stat(os.getpid())
    before = cpu_of(me)
    subprocess.run([sys.executable, "-c", BURN], check=True)
    used = cpu_delta(before, cpu_of(me))["self"]
    after = read_stat(os.getpid())
    assert own_before is not None
    assert after is not None
    assert after.reaped - own_before.reaped >= 0.25
    assert used >= 0.25


def test_descendants_walks_the_whole_tree() -> None:
    table = {1: 0, 10: 1, 11: 10, 12: 11, 13: 10, 20: 1}
    assert sorted(descendants([10], table)) == [11, 12, 13]
    assert descendants([12], table) == []


def test_cpu_delta_keeps_groups_that_vanished() -> None:
    assert cpu_delta({"a": 1.0, "b": 2.0}, {"a": 1.5}) == {"a": 0.5, "b": -2.0}


def test_rss_of_a_gone_process_is_zero() -> None:
    assert rss_kb(os.getpid()) > 0
    assert rss_kb(2**22 + 7) == 0


def _burn() -> None:
    import time

    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass


def test_a_forkserver_workers_cpu_survives_its_exit() -> None:
    """As imageproc: this process -> forkserver -> worker. The worker burns CPU and exits;
    the forkserver reaps it, so the tree, read again, still has its CPU."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    warm = context.Process(target=int)  # starts the forkserver
    warm.start()
    warm.join()
    me = os.getpid()
    before = cpu_of({"tree": [me, *descendants([me])]})
    worker = context.Process(target=_burn)
    worker.start()
    worker.join()
    after = cpu_of({"tree": [me, *descendants([me])]})
    assert worker.exitcode == 0
    assert after["tree"] - before["tree"] >= 0.25
