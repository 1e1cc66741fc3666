"""Fuzz for as long as you like: `python -m tests.fuzz --minutes 10 [--target NAME]`.

Each target (or only NAME) runs for the given time, one after the other, as repeated
Hypothesis runs with fresh seeds; prints the executions, the rate and the outcomes of
each target, and every failure with its seed. The exit status is 1 when a target failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
import traceback

from servicekit import configure_logging

from .engine import Stats, run
from .targets import TARGETS


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet_logging()
    names = [args.target] if args.target else list(TARGETS)
    results = [_fuzz(name, args.minutes * 60, args) for name in names]
    print("\n" + _table(results))
    return 1 if any(stats.failures for stats in results) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="per target (default 10)")
    parser.add_argument("--target", choices=sorted(TARGETS), help="only this target")
    parser.add_argument("--batch", type=int, default=2000, help="most examples per seed")
    parser.add_argument("--seed", type=int, help="first seed (then seed+1, ...)")
    parser.add_argument(
        "--no-known", action="store_true", help="fail on the known bugs too (known.KNOWN)"
    )
    parser.add_argument(
        "--watchdog",
        type=float,
        default=120.0,
        help="abort with all tracebacks when one example takes this long (seconds)",
    )
    return parser


def _quiet_logging() -> None:
    """Logs rendered as in production (JSON), to nowhere: rendering is exercised too."""
    configure_logging("fuzz", level="debug", fmt="json")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115  # for the process


def _fuzz(name: str, seconds: float, args: argparse.Namespace) -> Stats:
    stats = Stats(name)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    deadline = time.monotonic() + seconds
    print(f"{name}: {TARGETS[name].summary} ({seconds / 60:.1f} min)", flush=True)
    while (left := deadline - time.monotonic()) > 0:
        # Hypothesis runs to a number of examples, not a time: size each batch to fit.
        batch = TARGETS[name].suite_examples if not stats.executions else int(stats.rate * left)
        try:
            run(
                TARGETS[name](),
                examples=max(5, min(batch, args.batch)),
                stats=stats,
                seed=seed,
                tolerate_known=not args.no_known,
                watchdog=args.watchdog,
            )
        except Exception as exc:
            report = "".join(traceback.format_exception(exc))
            stats.failures.append(f"seed {seed}:\n{report}")
            print(f"\n{name}: FAILED with seed {seed}\n{report}", flush=True)
        seed += 1
        print(f"  {name}: {stats.executions} executions, {stats.rate:.0f}/s", flush=True)
    return stats


def _table(results: list[Stats]) -> str:
    lines = [f"{'target':<14} {'executions':>10} {'per s':>7} {'failures':>8}  known bugs met"]
    for stats in results:
        known = ", ".join(f"{bug} x{count}" for bug, count in sorted(stats.known.items()))
        lines.append(
            f"{stats.target:<14} {stats.executions:>10} {stats.rate:>7.1f}"
            f" {len(stats.failures):>8}  {known or '-'}"
        )
    for stats in results:
        top = ", ".join(f"{label} {n}" for label, n in stats.outcomes.most_common(12))
        lines.append(f"\n{stats.target} outcomes: {top}")
        lines += [f"{stats.target}: {name} {value:g}" for name, value in stats.peaks.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
