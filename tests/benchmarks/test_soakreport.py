"""The soak's verdicts: RSS trend, p99 stability, lost jobs, queues, audit."""

from __future__ import annotations

import math
from typing import Any

import pytest

from benchmarks import soakreport
from benchmarks.soak import SoakJob, SoakRun, arrival_times


def line(start: float, mb_per_10min: float, minutes: int = 20) -> list[tuple[float, float]]:
    return [(t, start + mb_per_10min * t / 600) for t in range(0, minutes * 60, 5)]


def test_slope_of_a_line_and_of_noise() -> None:
    assert soakreport.slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert soakreport.slope([(0, 5)]) == 0.0
    assert soakreport.slope([(1, 5), (1, 6)]) == 0.0


def test_flat_rss_is_flat_and_growth_is_not() -> None:
    flat = soakreport.rss_trend(line(200, 2))  # 1 % of the mean per 10 min
    assert flat["flat"] is True
    assert flat["slope_mb_per_10min"] == pytest.approx(2.0)
    growing = soakreport.rss_trend(line(200, 15))  # ~7 % of the mean per 10 min
    assert growing["flat"] is False
    shrinking = soakreport.rss_trend(line(200, -40))
    assert shrinking["flat"] is True


def test_a_sawtooth_without_growth_is_flat() -> None:
    """imageproc's workers are recycled: RSS rises and falls, with no trend."""
    points = [(t, 300 + 60 * ((t % 120) / 120)) for t in range(0, 1200, 2)]
    assert soakreport.rss_trend(points)["flat"] is True


def test_too_few_points_give_no_verdict() -> None:
    assert soakreport.rss_trend(line(100, 50, minutes=4))["flat"] is None  # under 5 minutes
    assert soakreport.rss_trend([*line(100, 0, minutes=0), (1, 100)])["flat"] is None


def minutes(p99s: list[float]) -> list[dict[str, Any]]:
    return [{"minute": i + 1, "p99_ms": value} for i, value in enumerate(p99s)]


def test_p99_stability_compares_the_last_third_with_the_first() -> None:
    assert soakreport.p99_stability(minutes([100, 110, 90, 120, 130, 140]))["stable"] is True
    assert soakreport.p99_stability(minutes([100, 100, 120, 150, 160, 170]))["stable"] is False
    assert soakreport.p99_stability(minutes([100, 120]))["stable"] is None
    # A backlog at the start that clears is not stable either.
    assert (
        soakreport.p99_stability(minutes([9000, 9100, 4000, 5000, 3900, 4000]))["stable"] is False
    )
    assert soakreport.p99_stability(minutes([math.nan, 100, 100, 100]))["stable"] is True


def run(statuses: list[str], **fields: Any) -> SoakRun:
    soak = SoakRun(minutes=5, rate=2.0, capacity=2.5)
    soak.jobs = [
        SoakJob(
            arrival=i * 10.0,
            job="fit512",
            file="a.jpg",
            job_id=f"j{i}",
            status=status,
            latency_ms=100.0 + i,
        )
        for i, status in enumerate(statuses)
    ]
    soak.rss_series = [(t, {"upload": 100.0, "imageproc": 300.0}) for t in range(0, 600, 2)]
    soak.queues_before = {"x.parking": 1}
    soak.queues_after = {"x": 0, "x.parking": 1}
    soak.drained_in = 0.5
    soak.audit = {"exit": 0, "gaps": []}
    for key, value in fields.items():
        setattr(soak, key, value)
    return soak


def test_a_clean_soak_passes() -> None:
    summary = soakreport.summarise(run(["succeeded"] * 30))
    assert summary["lost"] == 0
    assert summary["queues"]["ok"]
    assert summary["audit"]["ok"]
    assert [m["jobs"] for m in summary["per_minute"]] == [6, 6, 6, 6, 6]
    assert summary["verdict"] is True


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"jobs_status": "pending"}, "lost"),
        ({"queues_after": {"x": 3, "x.parking": 1}, "drained_in": None}, "queues"),
        ({"queues_after": {"x": 0, "x.parking": 2}}, "queues"),
        ({"audit": {"exit": 1, "gaps": [{"kind": "unfinished", "subject": "j3"}]}}, "audit"),
    ],
)
def test_each_failure_fails_the_soak(change: dict[str, Any], reason: str) -> None:
    statuses = ["succeeded"] * 30
    if change.pop("jobs_status", None):
        statuses[-1] = "pending"
    summary = soakreport.summarise(run(statuses, **change))
    assert summary["verdict"] is False
    if reason == "lost":
        assert summary["lost"] == 1
    if reason == "audit":
        assert summary["audit"]["gaps_in_soak_jobs"] == 1


def test_gaps_found_before_the_soak_are_not_the_soaks() -> None:
    old = {"kind": "incomplete_trail", "subject": "earlier", "detail": "no upload.received"}
    made = run(["succeeded"] * 30, audit={"exit": 1, "gaps": [old]})
    made.audit_before = {"exit": 1, "gaps": [old]}
    audit = soakreport.summarise(made)["audit"]
    assert (audit["gaps"], audit["gaps_before"], audit["gaps_new"]) == (1, 1, 0)
    assert audit["ok"] is True
    made.audit = {"exit": 2, "error": "could not run"}
    assert soakreport.summarise(made)["audit"]["ok"] is False


def test_refused_jobs_are_not_lost() -> None:
    summary = soakreport.summarise(run(["succeeded"] * 29 + ["refused"]))
    assert summary["lost"] == 0
    assert summary["by_status"] == {"succeeded": 29, "refused": 1}


def test_the_report_states_verdicts_and_thresholds() -> None:
    summary = soakreport.summarise(run(["succeeded"] * 30))
    text = "\n".join(soakreport.markdown(summary, "2026-12-02"))
    assert "Verdict: **yes**" in text
    assert "flat = slope < 5% of the mean per 10 min" in text
    assert "| imageproc | 300.0 | 0.00 | yes |" in text
    assert "[soak.md](soak.md)" in "\n".join(soakreport.bench_lines(summary))
    assert soakreport.target(None)[1] is None


def test_arrivals_are_poisson_at_the_rate() -> None:
    times = arrival_times(4.0, 600)
    assert times == sorted(times)
    assert times[-1] < 600
    assert 2160 < len(times) < 2640  # 2400 expected, ~5 sigma either side
    assert arrival_times(4.0, 600) == times  # seeded
    assert arrival_times(0.0, 600) == []


def test_a_short_soak_shows_numbers_but_no_rss_verdict() -> None:
    made = run(["succeeded"] * 6)
    made.rss_series = [(t, {"upload": 100.0 + t}) for t in range(0, 60, 2)]
    summary = soakreport.summarise(made)
    assert summary["rss"]["upload"]["mean_mb"] == pytest.approx(129.0)
    assert summary["rss"]["upload"]["flat"] is None
    assert summary["verdict"] is None
    assert "RSS flat: n/a (too short to judge)" in "\n".join(soakreport.bench_lines(summary))


def test_only_the_services_rss_is_judged() -> None:
    """moto keeps what it stores in memory: growing is not a leak of the mesh."""
    made = run(["succeeded"] * 30)
    made.rss_series = [(t, {"upload": 100.0, "s3": 100.0 + t}) for t in range(0, 600, 2)]
    summary = soakreport.summarise(made)
    assert summary["rss"]["s3"]["flat"] is False
    assert summary["rss"]["s3"]["judged"] is False
    assert summary["verdict"] is True
    assert "| *s3* |" in "\n".join(soakreport.markdown(summary, "today"))
    made.rss_series = [(t, {"upload": 100.0 + t, "s3": 100.0}) for t in range(0, 600, 2)]
    summary = soakreport.summarise(made)
    assert summary["verdict"] is False
    assert "RSS flat: NOT upload" in "\n".join(soakreport.bench_lines(summary))
