"""The command line: `python3 tools/stack COMMAND` (`make up`, `make down`, ...)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence

from .config import Config, load_config
from .deps import ensure_deps
from .errors import StackError, say
from .lifecycle import down, up
from .observability import ensure_observability
from .services import service_env, supervise
from .status import log_files, print_status, print_urls
from .supervisor import BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_RESET_AFTER

DESCRIPTION = (
    "imagemesh local stack: RabbitMQ, a CouchDB-compatible server, an S3 server and the services."
)

TOOLS = {
    "parking": ("messaging.parking", "python -m messaging.parking ARGS... (parked messages)"),
    "audit": (
        "provenancedb.audit",
        "python -m provenancedb.audit ARGS... (provenance completeness check)",
    ),
}
"""Operator commands run with the services' settings: `tools/stack NAME ARGS...`."""


def tool_command(
    config: Config, name: str, args: Sequence[str]
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of `python -m <module> ARGS` with the services' settings."""
    module, _ = TOOLS[name]
    return [str(config.paths.venv_python), "-m", module, *args], service_env(config)


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split off what goes to another program untouched: everything after a tool's name
    (`parking`, `audit`), or after `--` (the command of `supervise NAME -- CMD...`)."""
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--env-file":
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        if arg in TOOLS:
            return argv[: i + 1], argv[i + 1 :]
        break
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, []


def _add_supervise(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sup = sub.add_parser(
        "supervise",
        help="run service NAME (or `-- CMD...`) in front, restarting it when it exits",
    )
    sup.add_argument("name", help="service: its log, pid and state file names")
    sup.add_argument("--backoff", type=float, default=BACKOFF_INITIAL, metavar="SECONDS")
    sup.add_argument("--backoff-max", type=float, default=BACKOFF_MAX, metavar="SECONDS")
    sup.add_argument(
        "--reset-after",
        type=float,
        default=BACKOFF_RESET_AFTER,
        metavar="SECONDS",
        help="a run this long resets the back-off",
    )
    sup.add_argument(
        "--stop-timeout",
        type=float,
        metavar="SECONDS",
        help="SIGTERM -> SIGKILL grace (default: SHUTDOWN_TIMEOUT_SECONDS + 10)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tools/stack", description=DESCRIPTION)
    parser.add_argument(
        "--env-file", help="dotenv file over .env.example's defaults (default: .env)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    deps_parser = sub.add_parser("deps", help="install missing apt/npm packages")
    deps_parser.add_argument(
        "--test", action="store_true", help="also what the tests need (chromium, photos)"
    )
    deps_parser.add_argument("--pip", action="store_true", help="only python3-pip (for uv)")
    sub.add_parser("infra", help="deps + start and provision RabbitMQ, CouchDB, S3")
    sub.add_parser("up", help="infra + the four services")
    sub.add_parser("up-observability", help="Prometheus on loopback, scraping the services")
    sub.add_parser("down", help="stop everything the pid files name")
    sub.add_parser("status", help="component / pid / state table")
    logs_parser = sub.add_parser("logs", help="follow the logs (all, or one component)")
    logs_parser.add_argument("name", nargs="?")
    for tool, (_, description) in TOOLS.items():
        sub.add_parser(tool, help=f"{description}, with the services' settings", add_help=False)
    _add_supervise(sub)
    return parser


def _follow_logs(config: Config, name: str | None) -> int:
    files = [str(p) for p in log_files(config, name)]
    if not files:
        say(f"no logs under {config.paths.log_dir}")
        return 1
    os.execvp("tail", ["tail", "-n", "50", "-F", *files])


def run(args: argparse.Namespace, config: Config, passthrough: list[str]) -> int:
    """Run one parsed command; its exit status."""
    command: str = args.command
    if command == "deps":
        ensure_deps(config.paths, test=args.test, pip=args.pip)
    elif command in ("infra", "up"):
        ensure_deps(config.paths)
        up(config, services=command == "up")
        if command == "up":
            print_urls(config)
    elif command == "up-observability":
        ensure_observability(config)
    elif command == "down":
        down(config)
    elif command == "status":
        return 0 if print_status(config) else 3
    elif command == "supervise":
        return supervise(
            config,
            args.name,
            passthrough,
            backoff=args.backoff,
            backoff_max=args.backoff_max,
            reset_after=args.reset_after,
            stop_timeout=args.stop_timeout,
        )
    elif command in TOOLS:
        argv, env = tool_command(config, command, passthrough)
        os.chdir(config.paths.root)
        os.execve(argv[0], argv, env)
    elif command == "logs":
        return _follow_logs(config, args.name)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    own, passthrough = split_passthrough(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(own)
    if passthrough and args.command not in (*TOOLS, "supervise"):
        parser.error(f"unexpected arguments: {' '.join(passthrough)}")
    try:
        return run(args, load_config(env_file=args.env_file), passthrough)
    except StackError as exc:
        print(f"stack: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"stack: error: {exc}", file=sys.stderr, flush=True)
        return exc.returncode or 1
