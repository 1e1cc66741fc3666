"""tools/stack's services: instances and replicas, their ports and environments, the
operator commands, the command line's argument split, readiness rows."""

from __future__ import annotations

import json

import pytest
import stack


def test_replicas_get_their_own_names_and_ports(config: stack.Config) -> None:
    config = config.replace(IMAGEPROC_REPLICAS="3")
    assert stack.service_instances(config) == [
        "provenancedb",
        "imageproc",
        "imageproc-2",
        "imageproc-3",
        "imageproc_runner",
        "imageproc_runner-2",
        "imageproc_runner-3",
        "upload",
    ]
    assert stack.service_ready_url(config, "imageproc-3") == "http://127.0.0.1:8122/readyz"
    env = stack.service_env(config, "imageproc_runner-2")
    assert env["RUNNER_OPS_PORT"] == "8111"
    assert env["RABBITMQ_USER"] == "imageproc_runner"  # the service's own broker user
    assert env["AMQP_DECLARE_EXCHANGES"] == "false"
    alternative = stack.service_component(config, "imageproc-2").alternatives[0]
    assert alternative.args == ("-m", "imageproc")
    # The runner may scale on its own; the count is checked.
    fewer = config.replace(RUNNER_REPLICAS="1")
    assert "imageproc_runner-2" not in stack.service_instances(fewer)
    with pytest.raises(stack.StackError, match="IMAGEPROC_REPLICAS=0"):
        stack.service_instances(config.replace(IMAGEPROC_REPLICAS="0"))


def test_replicas_left_from_a_bigger_count_are_still_known(config: stack.Config) -> None:
    pid_dir = config.paths.pid_dir
    pid_dir.mkdir(parents=True)
    for name in ("imageproc-2", "imageproc-4", "imageproc-notes", "upload-2"):
        (pid_dir / f"{name}.pid").write_text("1\n")
    known = stack.known_instances(config)
    assert known[-2:] == ["imageproc-2", "imageproc-4"]  # what `up` stops and `down` too
    assert "imageproc-notes" not in known
    assert "upload-2" not in known


def test_services_never_get_couchdbs_admin_and_tools_get_the_auditor(
    config: stack.Config,
) -> None:
    for service in stack.SERVICES:
        env = stack.service_env(config, service)
        assert not set(env) & {*stack.COUCH_ADMIN_ONLY, *stack.COUCH_AUDITOR_ONLY}, service
    tools = stack.service_env(config)
    assert not set(tools) & set(stack.COUCH_ADMIN_ONLY)
    assert tools["COUCHDB_AUDITOR_USER"] == config["COUCHDB_AUDITOR_USER"]


def test_supervisors_start_from_the_package_with_the_stack_folder(
    config: stack.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[list[str], dict[str, str]]] = []

    def spawn(argv: list[str], env: dict[str, str], *_: object, **__: object) -> int:
        started.append((list(argv), dict(env)))
        return 1

    monkeypatch.setattr("stack.services.spawn", spawn)
    stack.start_supervised(config, "upload", {"A": "b"})
    ((argv, env),) = started
    assert argv[1:] == [str(config.paths.entry), "supervise", "upload"]
    assert stack.cmdline_matches(argv, stack.service_component(config, "upload").signature)
    assert env == {"A": "b", "STACK_DIR": str(config.paths.stack_dir)}


# --------------------------------------------------------------------------- readiness


def test_readiness_reports_the_failing_checks() -> None:
    def answer(status: int, body: object) -> stack.HttpAnswer:
        return stack.HttpAnswer(status, json.dumps(body).encode())

    ready = {"status": "ready", "checks": {"broker": True, "s3": True}}
    assert stack.readiness(answer(200, ready)) == (True, "up")
    failing = {"status": "unavailable", "checks": {"broker": True, "s3": False, "couchdb": False}}
    assert stack.readiness(answer(503, failing)) == (False, "not ready (s3, couchdb failing)")
    assert stack.readiness(stack.HttpAnswer(503, b"<html>")) == (False, "not ready")
    assert stack.readiness(answer(500, {})) == (False, "HTTP 500")
    assert stack.readiness(None) == (False, "down")


# --------------------------------------------------------------------------- operator tools


def test_audit_runs_the_completeness_check_with_the_services_settings(
    config: stack.Config,
) -> None:
    argv, env = stack.tool_command(config.replace(COUCHDB_DB="from-config"), "audit", ["--json"])
    assert argv == [str(config.paths.venv_python), "-m", "provenancedb.audit", "--json"]
    assert env["COUCHDB_DB"] == "from-config"
    assert env["S3_OUTPUT_BUCKET"] == config["S3_OUTPUT_BUCKET"]


def test_parking_runs_the_cli_with_the_services_settings(config: stack.Config) -> None:
    changed = config.replace(RABBITMQ_VHOST="from-config")
    argv, env = stack.tool_command(changed, "parking", ["republish", "--all", "--queue", "q"])
    assert argv == [
        str(config.paths.venv_python),
        "-m",
        "messaging.parking",
        "republish",
        "--all",
        "--queue",
        "q",
    ]
    assert env["RABBITMQ_VHOST"] == "from-config"
    assert env["RABBITMQ_PASSWORD"] == config["RABBITMQ_PASSWORD"]


@pytest.mark.parametrize(
    ("argv", "own", "passthrough"),
    [
        (["parking", "--queue", "q", "list"], ["parking"], ["--queue", "q", "list"]),
        (
            ["--env-file", "x", "parking", "show", "1"],
            ["--env-file", "x", "parking"],
            ["show", "1"],
        ),
        (["parking", "--", "-x"], ["parking"], ["--", "-x"]),
        (["audit", "--grace", "60"], ["audit"], ["--grace", "60"]),
        (
            ["supervise", "n", "--backoff", "1", "--", "sh", "--", "-c"],
            ["supervise", "n", "--backoff", "1"],
            ["sh", "--", "-c"],
        ),
        (["status"], ["status"], []),
    ],
)
def test_split_passthrough(argv: list[str], own: list[str], passthrough: list[str]) -> None:
    assert stack.split_passthrough(argv) == (own, passthrough)


def test_service_stop_timeout_follows_the_drain_setting(config: stack.Config) -> None:
    assert stack.service_stop_timeout(config.replace(SHUTDOWN_TIMEOUT_SECONDS="30")) == 40.0
    assert stack.service_stop_timeout(config.replace(SHUTDOWN_TIMEOUT_SECONDS="5")) == 15.0
    assert stack.service_stop_timeout(stack.Config.of({})) == 40.0


def test_the_services_are_the_meshs(config: stack.Config) -> None:
    """Their names come from messaging.constants (loaded by path: no venv needed)."""
    from messaging.constants import SERVICES

    assert list(stack.SERVICES) == list(reversed(SERVICES))  # start order: upload last
    assert set(stack.REPLICATED) < set(SERVICES)
