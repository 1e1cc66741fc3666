"""`imagemesh`: parse the command line, run the command, exit with its code."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .api import DEFAULT_URL, ApiClient
from .commands import (
    Command,
    UsageError,
    Waiting,
    cancel,
    history,
    run,
    status,
    submit,
    webhook_key,
)
from .download import DEFAULT_ZIP, download
from .erase import Confirm, confirmation, erase
from .render import Printer
from .retry import retry
from .statuses import JOB_STATUSES

EPILOG = """\
exit codes: 0 done (every job succeeded), 1 a job failed or the API refused a request,
2 bad usage or an invalid pipeline (nothing submitted) or a file download will not
overwrite, 3 service unreachable or unavailable

signing in: when the server has API tokens on, set IMAGEMESH_TOKEN to yours (an operator
makes it with `python -m upload.tokens new NAME` and adds the printed entry to
UPLOAD_API_TOKEN_HASHES). Your jobs are yours: status, results and history show only them
(auditors, UPLOAD_AUDITORS, see everyone's). Without tokens everyone is `local`.

examples:
  export IMAGEMESH_TOKEN=...             # the token you were given, when tokens are on
  imagemesh submit photo.jpg --op thumbnail:width=256,height=256 --op grayscale --wait
  imagemesh submit *.png --pipeline '[{"op": "convert", "format": "webp"}]' --wait -o out/
  imagemesh status 3f2a9c1d              imagemesh history --status failed --limit 5
  imagemesh cancel 3f2a9c1d              imagemesh retry 3f2a9c1d --op grayscale --wait
  imagemesh erase 3f2a9c1d --yes         # its images deleted for good, its record kept
  imagemesh download 3f2a9c1d           imagemesh download 3f2a9c1d 9b04e7aa -o results.zip
  imagemesh submit photo.jpg --callback-url https://example.org/hook
  imagemesh webhook-key                  # the key that hook checks signatures with
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    url: str = args.url
    if not url.startswith(("http://", "https://")):
        parser.error(f"--url must be an http:// or https:// URL, got {url!r}")
    command = _command(parser, args)
    client = ApiClient(url, retry_for=args.retry_for, token=os.environ.get("IMAGEMESH_TOKEN"))
    printer = Printer(json_mode=args.json)
    try:
        return asyncio.run(run(client, printer, command))
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagemesh",
        description="Submit images to imagemesh, follow their jobs, list the history.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, defaults=True)
    # The options are accepted after the command too; there they must not default, or
    # they would overwrite what was given before the command.
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_submit(commands, common)
    show = commands.add_parser("status", parents=[common], help="show one job")
    show.add_argument(
        "job_id",
        metavar="ID",
        help="the job's id, or its start (at least 6 characters, e.g. the 8 shown): one "
        "of your jobs must be the only one that starts with it",
    )
    stop = commands.add_parser(
        "cancel",
        parents=[common],
        help="cancel a queued or processing job of yours",
        description="Ask to cancel the job: it ends `cancelled` and stores no output, "
        "unless it finishes first (exit 1 when it already had).",
    )
    stop.add_argument("job_id", metavar="ID", help="the job's id, or its start (as for status)")
    _add_retry(commands, common)
    _add_erase(commands, common)
    _add_download(commands, common)
    commands.add_parser(
        "webhook-key",
        parents=[common],
        help="print your webhook signing key",
        description="Print the key your jobs' webhooks (submit --callback-url) are signed "
        "with, to check their X-Imagemesh-Signature. It is yours alone; exit 1 when the "
        "server has webhooks off.",
    )
    recent = commands.add_parser("history", parents=[common], help="list recent jobs")
    recent.add_argument("--status", choices=JOB_STATUSES, help="only jobs with this status")
    recent.add_argument("--limit", type=_positive, default=20, help="at most N jobs (default 20)")
    return parser


def _add_common(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--url",
        default=default(os.environ.get("IMAGEMESH_URL") or DEFAULT_URL),
        help=f"the API's base URL (default: $IMAGEMESH_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output: one JSON object per line",
    )
    parser.add_argument(
        "--retry-for",
        type=_seconds,
        default=default(30.0),
        metavar="SECONDS",
        help="how long to keep retrying while the service answers 503 or the connection "
        "drops (default: 30)",
    )


def _add_submit(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    send = commands.add_parser(
        "submit",
        parents=[common],
        help="submit images (one job each)",
        description="Submit each FILE as one job with the same pipeline.",
    )
    send.add_argument("files", nargs="+", type=Path, metavar="FILE")
    send.add_argument(
        "--callback-url",
        metavar="URL",
        help="an http(s) URL the server POSTs each job's end to, signed (a webhook: see "
        "the README); refused (exit 2) when it resolves to a private or local address",
    )
    _add_pipeline(send)
    _add_wait(send, "follow each job and save its result")


def _add_erase(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    wipe = commands.add_parser(
        "erase",
        parents=[common],
        help="delete a finished job's images (its record stays)",
        description="Erase a succeeded, failed or cancelled job of yours: its input, output "
        "and thumbnail are deleted for good (each unless another job still uses it), its "
        "record stays and shows who erased it when. On a terminal it asks first; "
        "elsewhere give --yes.",
    )
    wipe.add_argument("job_id", metavar="ID", help="the job's id, or its start (as for status)")
    wipe.add_argument("--yes", "-y", action="store_true", help="erase without asking")


def _add_retry(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    again = commands.add_parser(
        "retry",
        parents=[common],
        help="run a failed or cancelled job of yours again, as a new job",
        description="Retry the job as a new job on its stored input (nothing is uploaded), "
        "with its own pipeline, or the one given. Prints the new job's id; exit 1 when "
        "the job is still running or succeeded, not yours, or its input was erased.",
    )
    again.add_argument("job_id", metavar="ID", help="the job's id, or its start (as for status)")
    _add_pipeline(again, default="the job's own")
    _add_wait(again, "follow the new job and save its result")


def _add_pipeline(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    given = parser.add_mutually_exclusive_group()
    given.add_argument(
        "--op",
        action="append",
        default=[],
        metavar="NAME[:key=value,...]",
        help="an operation, repeatable, applied in order (e.g. thumbnail:width=256 "
        "--op grayscale); values are JSON when they parse as JSON, else text"
        + (f" (default pipeline: {default})" if default else ""),
    )
    given.add_argument("--pipeline", metavar="JSON", help="the whole pipeline as a JSON list")
    given.add_argument(
        "--pipeline-file",
        type=Path,
        metavar="FILE",
        help="the pipeline JSON from a file (- = stdin)",
    )


def _add_wait(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--wait", action="store_true", help=what)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="with --wait: where results go, as <name>-<job id>.<ext> (default: .)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="with --wait: give up on a job after this long (default: no limit)",
    )


def _add_download(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    fetch = commands.add_parser(
        "download",
        parents=[common],
        help="save the results of succeeded jobs of yours",
        description="Save one job's result as <name>-<short id>.<ext> (as submit --wait "
        f"does), or several jobs' results as one zip ({DEFAULT_ZIP}). A file is written "
        "whole or not at all, and an existing one is kept unless --force. Exit 1 when a "
        "job is unknown, not finished, failed, cancelled or erased: nothing is saved, but "
        "a zip short of erased jobs only (it holds the others; erased.txt names those).",
    )
    fetch.add_argument(
        "job_ids", nargs="+", metavar="ID", help="job ids, or their starts (as for status)"
    )
    fetch.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="the file to write, or a folder to write it in (default: the current folder)",
    )
    fetch.add_argument("--zip", action="store_true", help="a zip even for one job")
    fetch.add_argument("--force", action="store_true", help="replace an existing file")


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Command:
    if args.command == "status":
        return functools.partial(status, job_id=args.job_id)
    if args.command == "cancel":
        return functools.partial(cancel, job_id=args.job_id)
    if args.command == "erase":
        return functools.partial(erase, job_id=args.job_id, confirm=_confirm(parser, args))
    if args.command == "download":
        return functools.partial(
            download,
            job_ids=args.job_ids,
            output=args.output,
            as_zip=args.zip,
            force=args.force,
        )
    if args.command == "webhook-key":
        return webhook_key
    if args.command == "history":
        return functools.partial(history, status=args.status, limit=args.limit)
    if not args.wait and (args.output is not None or args.timeout is not None):
        parser.error("--output and --timeout go with --wait")
    pipeline_json, source = args.pipeline, "--pipeline"
    if args.pipeline_file is not None:
        pipeline_json = _read_pipeline_file(parser, args.pipeline_file)
        source = str(args.pipeline_file)
    wait = Waiting(args.output or Path(), args.timeout) if args.wait else None
    given = {"ops": args.op, "pipeline_json": pipeline_json, "pipeline_source": source}
    if args.command == "retry":
        return functools.partial(retry, job_id=args.job_id, wait=wait, **given)
    return functools.partial(
        submit, files=args.files, wait=wait, callback_url=args.callback_url, **given
    )


def _confirm(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Confirm | None:
    try:
        return confirmation(args.yes, sys.stdin.isatty())
    except UsageError as exc:
        parser.exit(2, f"imagemesh: {exc}\n")


def _read_pipeline_file(parser: argparse.ArgumentParser, path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        parser.error(f"--pipeline-file {path}: {exc.strerror}")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
