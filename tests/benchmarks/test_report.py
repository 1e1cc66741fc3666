"""bench.md's pieces: overhead table, targets, repeated request, options."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import overhead, repeat, report
from benchmarks.bench import imageproc_jobs, parse_args, quick_pick
from benchmarks.corpus import Picture
from benchmarks.engines import STACK_BUT_IMAGEPROC, Result, Run
from benchmarks.measure import Row, mixed_capacity, spread, summarise

GROUP_MS = {
    "upload": 12.0,
    "imageproc_runner": 8.0,
    "provenancedb": 9.0,
    "rabbitmq": 7.0,
    "couchdb": 15.0,
    "s3": 6.0,
    "imageproc": 80.0,
}


def mesh_run(job: str, concurrency: int, scale: float = 1.0, images: int = 10) -> Run:
    cpu = {name: ms * scale * images / 1000 for name, ms in GROUP_MS.items()}
    cpu[STACK_BUT_IMAGEPROC] = sum(v for k, v in cpu.items() if k != "imageproc")
    cpu["client"] = 0.004 * images
    results = [Result(f"{i}.jpg", 0.1 + i / 100, 1000) for i in range(images)]
    return Run("imagemesh", job, concurrency, images * scale / 2, results, cpu)


def rows() -> list[Row]:
    runs = [mesh_run(job, 4, scale) for job in ("fit512", "dither") for scale in (0.9, 1.0, 1.1)]
    return summarise(runs, {})


def test_overhead_table_sums_all_but_imageproc() -> None:
    text = "\n".join(overhead.table(rows()))
    assert "| process group | fit512 | dither |" in text
    assert "| upload | 12.0 (±10%) |" in text
    assert "| **sum: all but imageproc** | 57.0 (±10%) |" in text
    assert "| imageproc (shown, not in the sum) | 80.0" in text
    assert "| benchmark client (getrusage; not in the sum) | 4.0 (±0%) |" in text
    assert "30 fit512 jobs" in text


def test_overhead_target() -> None:
    name, met, detail = overhead.target(rows())
    assert "<= 50 ms" in name
    assert met is False
    assert detail.startswith("57.0 ms")
    assert "largest: couchdb 15.0 ms" in detail
    assert overhead.target([])[1] is None


def test_spread_and_mixed_capacity() -> None:
    assert spread([9.0, 10.0, 11.0]) == pytest.approx(0.2)
    assert spread([5.0]) == 0.0
    made = summarise([mesh_run("fit512", 4), mesh_run("dither", 4, scale=3.0)], {})
    # 2 and 2/3 img/s: an equal mix takes 0.5 + 1.5 s per pair -> 1 job/s
    assert mixed_capacity(made, "imagemesh", 4) == pytest.approx(1.0)
    assert mixed_capacity(made, "imagemesh", 1) == 0.0


def facts(sum_pss: float, jobs: int, large: int) -> dict[str, Any]:
    return {
        "processes": 2,
        "memory": {"imageproc": {"sum_rss": 400.0, "sum_pss": sum_pss, "single": 120.0}},
        "imageproc_jobs": {"total": jobs, "large_progressive": large},
    }


def test_memory_target_needs_500_jobs_with_a_large_progressive_one() -> None:
    assert report.memory_target(facts(180, 600, 10))[1] is True
    assert report.memory_target(facts(260, 600, 10))[1] is False
    assert report.memory_target(facts(180, 400, 10))[1] is None
    assert report.memory_target(facts(180, 600, 0))[1] is None
    assert "sum Pss 180" in report.memory_target(facts(180, 600, 10))[2]
    assert "sum RSS 400" in report.memory_target(facts(180, 600, 10))[2]


def repeat_summary(reused: int) -> dict[str, Any]:
    result = repeat.RepeatResult("a.jpg", "fit512", first_ms=300.0)
    result.after_202_ms = [20.0, 25.0, 40.0]
    result.post_ms = [30.0, 35.0, 50.0]
    result.reused = reused
    return result.summary()


def test_repeat_is_na_until_the_mesh_reuses() -> None:
    _name, met, detail = repeat.target(repeat_summary(0))
    assert met is None
    assert detail.startswith("n/a, computed")
    assert "n/a, computed" in "\n".join(repeat.lines(repeat_summary(0)))
    assert repeat.target(repeat_summary(3))[1] is True
    assert "| 202 answer -> `succeeded` | 25 | 40 |" in repeat.lines(repeat_summary(3))


def test_targets_list_issue_13s_six_first() -> None:
    targets = report.check_targets(rows(), facts(180, 600, 1))
    kinds = [name.split(":")[0].split(" ")[0] for name, _, _ in targets[:10]]
    assert kinds == ["overhead", *["fit512", "dither", "webp1024"] * 2, "memory", "reuse", "soak"]
    assert "throughput" in targets[1][0]
    assert "p50 latency" in targets[4][0]
    assert targets[1][1] is None  # no raw pyvips rows: not measured, still listed


def test_quick_changes_only_the_defaults() -> None:
    quick = parse_args(["--quick"])
    assert (quick.rounds, quick.soak_minutes, quick.repeats) == (1, 1.0, 5)
    full = parse_args([])
    assert (full.rounds, full.soak_minutes, full.repeats) == (3, 20.0, 20)
    assert parse_args(["--quick", "--soak-minutes", "0"]).soak_minutes == 0


def test_quick_pick_keeps_the_largest_progressive() -> None:
    pictures = [Picture(f"{i}.jpg", "x", 1, 100, 100, False) for i in range(20)]
    pictures.append(Picture("big.jpg", "x", 1, 6000, 4000, True))
    assert pictures[-1] in quick_pick(pictures)
    assert len(quick_pick(pictures)) < 10


def test_jobs_through_imageproc_leave_out_reused_repeats() -> None:
    runs = [mesh_run("fit512", 4, images=3)]
    runs[0].results[0].name = "big.jpg"
    summary = repeat_summary(reused=2)  # the first, then 3 repeats of which 2 reused
    counted = imageproc_jobs(runs, summary, None, {"big.jpg"})
    assert counted == {"total": 3 + 1 + 1, "large_progressive": 1}
