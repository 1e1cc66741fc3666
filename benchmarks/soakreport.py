"""Judging a soak and writing `soak.md`, `soak.json` and `soak.png`.

The verdicts, each with its stated threshold:

- RSS flat: per service (upload, imageproc_runner, imageproc, provenancedb), the
  least-squares slope of the summed RSS over the soak, in MB per 10 minutes, below
  `FLAT_FRACTION` (5 %) of the group's mean RSS per 10 min. The infrastructure servers'
  trends are shown but not judged: moto keeps every stored object in memory and PouchDB
  Server caches what it stores, so they grow with the data by design, not by a leak;
- p99 stable: the medians of the per-minute p99 latencies over the first and the last
  third of the minutes within `P99_FACTOR` (1.5) of each other, either way: a p99 that
  grows is unstable, and so is one that starts from a backlog and falls (three minutes
  or more; a shorter soak has no verdict);
- lost: jobs accepted or sent and not final `GRACE` seconds after the last arrival: 0;
- drained: every work queue empty within the drain deadline, every parking lot holding
  what it held before the soak;
- audit: `provenancedb.audit` ran, and found no gap it had not found before the soak
  (the stack's database keeps earlier jobs, tests' half-written ones too) and none among
  this soak's jobs; the absolute count is reported beside it.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.measure import percentile
from benchmarks.soak import SoakJob, SoakRun
from benchmarks.stackprocs import SERVICES

FLAT_FRACTION = 0.05
P99_FACTOR = 1.5
MIN_POINTS = 10
#: Less time than this gives no RSS verdict: a slope over a minute says nothing of 10.
MIN_SPAN_SECONDS = 300.0
FINAL = {"succeeded", "failed"}


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two distinct x)."""
    if len(points) < 2:
        return 0.0
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    var_x = sum((x - mean_x) ** 2 for x, _ in points)
    if var_x == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var_x


def rss_trend(points: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Mean, slope (MB per 10 min) and verdict of one group's RSS over time (seconds, MB).
    Too few points, or too short a time: no verdict (None), the numbers still shown."""
    if not points:
        return {"mean_mb": None, "slope_mb_per_10min": None, "flat": None, "points": 0}
    span = points[-1][0] - points[0][0]
    mean = statistics.fmean(y for _, y in points)
    per_10min = slope(points) * 600
    judged = len(points) >= MIN_POINTS and span >= MIN_SPAN_SECONDS
    return {
        "mean_mb": round(mean, 1),
        "slope_mb_per_10min": round(per_10min, 2),
        "flat": per_10min < FLAT_FRACTION * mean if judged else None,
        "points": len(points),
    }


def rss_trends(series: Sequence[tuple[float, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Each group's trend; "judged" says whether it counts in the verdict (the services)."""
    by_group: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for t, sums in series:
        for name, mb in sums.items():
            by_group[name].append((t, mb))
    return {
        name: {**rss_trend(points), "judged": name in SERVICES}
        for name, points in sorted(by_group.items())
    }


def judged_flats(summary: dict[str, Any]) -> dict[str, bool | None]:
    return {name: t["flat"] for name, t in summary["rss"].items() if t.get("judged", True)}


def per_minute(jobs: Sequence[SoakJob]) -> list[dict[str, Any]]:
    """Jobs by the minute they arrived in: count, failures, p50 and p99 latency (ms)."""
    minutes: dict[int, list[SoakJob]] = defaultdict(list)
    for job in jobs:
        minutes[int(job.arrival // 60)].append(job)
    rows = []
    for minute in sorted(minutes):
        group = minutes[minute]
        latencies = [j.latency_ms for j in group if j.status == "succeeded" and j.latency_ms]
        rows.append(
            {
                "minute": minute + 1,
                "jobs": len(group),
                "not_succeeded": sum(j.status != "succeeded" for j in group),
                "p50_ms": round(percentile(latencies, 0.5), 1),
                "p99_ms": round(percentile(latencies, 0.99), 1),
            }
        )
    return rows


def p99_stability(minutes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """First and last third's median per-minute p99, and whether each is within
    P99_FACTOR of the other (None under three minutes)."""
    p99s = [m["p99_ms"] for m in minutes if m["p99_ms"] == m["p99_ms"]]  # not NaN
    third = len(p99s) // 3
    if third < 1:
        return {"first_ms": None, "last_ms": None, "stable": None}
    first, last = statistics.median(p99s[:third]), statistics.median(p99s[-third:])
    stable = max(first, last) <= P99_FACTOR * min(first, last)
    return {"first_ms": first, "last_ms": last, "stable": stable}


def drained(run: SoakRun) -> dict[str, Any]:
    """Work queues empty in time, parking lots as before the soak."""
    grew = {
        name: (run.queues_before.get(name, 0), count)
        for name, count in run.queues_after.items()
        if name.endswith(".parking") and count != run.queues_before.get(name, 0)
    }
    left = {n: c for n, c in run.queues_after.items() if c and not n.endswith(".parking")}
    return {
        "drained_in_s": None if run.drained_in is None else round(run.drained_in, 1),
        "work_queues_left": left,
        "parking_changed": grew,
        "ok": run.drained_in is not None and not grew,
    }


def _gap_key(gap: dict[str, Any]) -> tuple[Any, ...]:
    return (gap.get("kind"), gap.get("subject"), gap.get("detail"))


def audit_result(run: SoakRun) -> dict[str, Any]:
    """Gaps after the soak, those new since before it, and those among its own jobs: the
    verdict wants the audit to have run and no new gap."""
    gaps = run.audit.get("gaps", [])
    earlier = {_gap_key(gap) for gap in run.audit_before.get("gaps", [])}
    new = [gap for gap in gaps if _gap_key(gap) not in earlier]
    ids = {job.job_id for job in run.jobs if job.job_id}
    mine = [gap for gap in gaps if gap.get("subject") in ids]
    ran = run.audit.get("exit") in (0, 1) and "error" not in run.audit
    return {
        "exit": run.audit.get("exit"),
        "gaps": len(gaps),
        "gaps_before": len(earlier),
        "gaps_new": len(new),
        "gaps_in_soak_jobs": len(mine),
        "examples": new[:5],
        "error": run.audit.get("error", ""),
        "ok": ran and not new and not mine,
    }


def summarise(run: SoakRun) -> dict[str, Any]:
    """Every number and verdict of the soak (what soak.json holds, less the raw jobs)."""
    counts: dict[str, int] = defaultdict(int)
    for job in run.jobs:
        counts[job.status] += 1
    lost = sum(job.status not in FINAL | {"refused"} for job in run.jobs)
    trends = rss_trends(run.rss_series)
    minutes = per_minute(run.jobs)
    summary = {
        "minutes": run.minutes,
        "capacity_jobs_per_s": round(run.capacity, 3),
        "rate_jobs_per_s": round(run.rate, 3),
        "sent": len(run.jobs),
        "by_status": dict(counts),
        "lost": lost,
        "rss": trends,
        "per_minute": minutes,
        "p99": p99_stability(minutes),
        "queues": drained(run),
        "audit": audit_result(run),
        "thresholds": {"flat_fraction_per_10min": FLAT_FRACTION, "p99_factor": P99_FACTOR},
    }
    summary["verdict"] = verdict(summary)
    return summary


def verdict(summary: dict[str, Any]) -> bool | None:
    """All of: RSS flat in every service, p99 stable, 0 lost, drained, audit clean. None when a
    judgement could not be made (a soak too short for trends)."""
    flats = list(judged_flats(summary).values())
    stable = summary["p99"]["stable"]
    hard = summary["lost"] == 0 and summary["queues"]["ok"] and summary["audit"]["ok"]
    if not hard or False in flats or stable is False:
        return False
    if None in flats or stable is None or not flats:
        return None
    return True


def plain(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "NO")


def yes_no(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "**NO**")


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _share(summary: dict[str, Any]) -> str:
    capacity = summary["capacity_jobs_per_s"]
    return f"{summary['rate_jobs_per_s'] / capacity:.0%}" if capacity else "n/a"


def _status_text(summary: dict[str, Any]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(summary["by_status"].items()))


def _verdict_lines(summary: dict[str, Any]) -> list[str]:
    queues, audit, p99 = summary["queues"], summary["audit"], summary["p99"]
    return [
        f"Verdict: **{plain(summary['verdict'])}** (flat RSS, stable p99, 0 lost, queues "
        "drained, audit without gaps).",
        "",
        f"- jobs sent: {summary['sent']} ({_status_text(summary)}); **lost: {summary['lost']}**",
        f"- p99 per minute, median of the first third {_fmt(p99['first_ms'], 0)} ms, of the "
        f"last third {_fmt(p99['last_ms'], 0)} ms: stable (each <= {P99_FACTOR} x the other): "
        f"{yes_no(p99['stable'])}",
        f"- queues: drained in {_fmt(queues['drained_in_s'])} s: {yes_no(queues['ok'])}"
        + (f"; left {queues['work_queues_left']}" if queues["work_queues_left"] else "")
        + (f"; parking changed {queues['parking_changed']}" if queues["parking_changed"] else ""),
        f"- `make audit`: exit {audit['exit']}, {audit['gaps']} gaps ({audit['gaps_before']} "
        f"before the soak, {audit['gaps_new']} new, {audit['gaps_in_soak_jobs']} among this "
        f"soak's jobs): no new gap: {yes_no(audit['ok'])}"
        + (f"; {audit['error']}" if audit["error"] else ""),
        "",
    ]


def _table_lines(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"## RSS per process group (sum of VmRSS; flat = slope < {FLAT_FRACTION:.0%} of the "
        "mean per 10 min)",
        "",
        "Judged: the four services; the infrastructure servers are shown, in italics, "
        "not judged (they keep what they store).",
        "",
        "| group | mean MB | slope MB / 10 min | flat | samples |",
        "|---|---|---|---|---|",
    ]
    for name, trend in summary["rss"].items():
        shown = name if trend.get("judged", True) else f"*{name}*"
        lines.append(
            f"| {shown} | {_fmt(trend['mean_mb'])} | {_fmt(trend['slope_mb_per_10min'], 2)} | "
            f"{yes_no(trend['flat'])} | {trend['points']} |"
        )
    lines += ["", "## Latency per minute (POST to final status)", ""]
    lines += ["| minute | jobs | not succeeded | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    lines += [
        f"| {m['minute']} | {m['jobs']} | {m['not_succeeded']} | {m['p50_ms']:.0f} | "
        f"{m['p99_ms']:.0f} |"
        for m in summary["per_minute"]
    ]
    return lines


def markdown(summary: dict[str, Any], date: str) -> list[str]:
    """soak.md."""
    lines = [
        "# imagemesh soak",
        "",
        f"{date}: {summary['minutes']:g} min of open-loop mixed jobs (fit512, dither, "
        f"webp1024 in turn, Poisson arrivals) at {summary['rate_jobs_per_s']:.2f} jobs/s, "
        f"{_share(summary)} of the {summary['capacity_jobs_per_s']:.2f} jobs/s measured at "
        "c = 4 in the same run; every input unique. `make bench` wrote this file.",
        "",
        *_verdict_lines(summary),
        *_table_lines(summary),
    ]
    examples = summary["audit"]["examples"]
    if examples:
        lines += ["", "## New audit gaps (first five)", ""]
        lines += [f"- {g.get('kind')}: {g.get('subject')}: {g.get('detail')}" for g in examples]
    return [*lines, ""]


def chart(series: Sequence[tuple[float, dict[str, float]]], path: Path) -> None:
    """RSS over time per group (soak.png; skipped without matplotlib, which `make bench`
    installs with the bench dependency group)."""
    try:
        import matplotlib
    except ImportError:
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4.5))
    start = series[0][0] if series else 0.0
    for name in sorted({name for _, sums in series for name in sums}):
        points = [(t, sums[name]) for t, sums in series if name in sums]
        axis.plot([(t - start) / 60 for t, _ in points], [mb for _, mb in points], label=name)
    axis.set_xlabel("minutes into the soak")
    axis.set_ylabel("RSS, MB (sum over the group's processes)")
    axis.legend(fontsize=7, loc="upper left", ncols=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(run: SoakRun, summary: dict[str, Any], out: Path, date: str) -> None:
    """soak.md, soak.json (summary, every job, the RSS series) and soak.png."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.md").write_text("\n".join(markdown(summary, date)))
    raw = {"summary": summary, "jobs": [asdict(j) for j in run.jobs], "rss": run.rss_series}
    (out / "soak.json").write_text(json.dumps(raw, indent=1) + "\n")
    if run.rss_series:
        chart(run.rss_series, out / "soak.png")


def bench_lines(summary: dict[str, Any] | None) -> list[str]:
    """The soak's summary in bench.md."""
    if summary is None:
        return ["## Soak", "", "Skipped (`--soak-minutes 0`).", ""]
    judged = judged_flats(summary)
    flats = list(judged.values())
    growing = [name for name, flat in judged.items() if flat is False]
    if growing:
        rss = "NOT " + ", ".join(growing)
    else:
        rss = "n/a (too short to judge)" if None in flats or not flats else "all services"
    return [
        "## Soak",
        "",
        f"{summary['minutes']:g} min at {summary['rate_jobs_per_s']:.2f} jobs/s "
        f"({_share(summary)} of {summary['capacity_jobs_per_s']:.2f}), {summary['sent']} jobs, "
        f"{summary['lost']} lost, {summary['by_status'].get('refused', 0)} refused; "
        f"RSS flat: {rss}; "
        f"p99 stable: {yes_no(summary['p99']['stable'])}; queues drained: "
        f"{yes_no(summary['queues']['ok'])}; audit gaps: {summary['audit']['gaps_new']} new "
        f"({summary['audit']['gaps']} in all). "
        "Details: [soak.md](soak.md).",
        "",
    ]


def target(summary: dict[str, Any] | None) -> tuple[str, bool | None, str]:
    name = "soak at 80 % capacity: RSS flat, p99 stable, 0 lost, queues drained, 0 new audit gaps"
    if summary is None:
        return name, None, "skipped"
    detail = (
        f"{summary['minutes']:g} min, {summary['sent']} jobs, {summary['lost']} lost, "
        f"audit gaps {summary['audit']['gaps_new']} new ({summary['audit']['gaps']} in all); "
        "see soak.md"
    )
    return name, summary["verdict"], detail
