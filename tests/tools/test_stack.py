"""Unit tests of tools/stack.py's pure parts: no servers, no processes beyond this one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import stack


def test_parse_dotenv_basics() -> None:
    text = """
# a comment
RABBITMQ_HOST=127.0.0.1
export S3_URL = http://127.0.0.1:9000
QUOTED="two words # not a comment"
SINGLE='it''s'
INLINE=value # a comment
EMPTY=
ESCAPED="line\\nnext \\"q\\""
not a line
=novalue
1BAD=x
URL=http://h/x?a=b=c
"""
    assert stack.parse_dotenv(text) == {
        "RABBITMQ_HOST": "127.0.0.1",
        "S3_URL": "http://127.0.0.1:9000",
        "QUOTED": "two words # not a comment",
        "SINGLE": "it''s",
        "INLINE": "value",
        "EMPTY": "",
        "ESCAPED": 'line\nnext "q"',
        "URL": "http://h/x?a=b=c",
    }


def test_parse_dotenv_hash_inside_unquoted_value_is_kept() -> None:
    assert stack.parse_dotenv("PASSWORD=abc#def") == {"PASSWORD": "abc#def"}


def test_load_config_precedence(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RABBITMQ_VHOST=from-file\nCOUCHDB_DB=from-file\nEXTRA=x\n")
    config = stack.load_config(env_file, environ={"COUCHDB_DB": "from-env", "UNRELATED": "y"})
    assert config["RABBITMQ_VHOST"] == "from-file"
    assert config["COUCHDB_DB"] == "from-env"
    assert config["EXTRA"] == "x"
    assert config["S3_INPUT_BUCKET"] == stack.DEFAULTS["S3_INPUT_BUCKET"]
    assert "UNRELATED" not in config


def test_load_config_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert stack.load_config(tmp_path / "absent", environ={}) == stack.DEFAULTS


def test_default_env_file_prefers_dotenv(tmp_path: Path) -> None:
    assert stack.default_env_file(tmp_path) is None
    (tmp_path / ".env.example").write_text("A=1\n")
    assert stack.default_env_file(tmp_path) == tmp_path / ".env.example"
    (tmp_path / ".env").write_text("A=2\n")
    assert stack.default_env_file(tmp_path) == tmp_path / ".env"


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (["/repo/.venv/bin/python", "-m", "upload"], True),
        (["/repo/.venv/bin/python", "-m", "upload", "--x"], True),
        (["/repo/.venv/bin/python", "-m", "upload_other"], False),
        (["/repo/.venv/bin/python", "-m", "imageproc"], False),
        (["/usr/bin/python3", "-c", "-m upload"], False),
        (["/usr/bin/bash", "-m", "upload"], False),
        ([], False),
    ],
)
def test_cmdline_matches_service(cmdline: list[str], expected: bool) -> None:
    signature = stack.service_component("upload").signature
    assert stack.cmdline_matches(cmdline, signature) is expected


def test_cmdline_matches_pouchdb() -> None:
    signature = stack.couch_component(stack.DEFAULTS).signature
    data = str(stack.COUCH_DIR / "data")
    ours = ["node", "/r/tools/node_modules/.bin/pouchdb-server", "--dir", data, "--port", "5984"]
    assert stack.cmdline_matches(ours, signature)
    assert not stack.cmdline_matches(["node", "pouchdb-server", "--dir", "/elsewhere"], signature)
    assert not stack.cmdline_matches(["node", "other.js", "--dir", data], signature)


def test_environ_matches() -> None:
    signature = stack.Signature(environ=(("RABBITMQ_NODENAME", "imagemesh@localhost"),))
    assert stack.environ_matches({"RABBITMQ_NODENAME": "imagemesh@localhost"}, signature)
    assert not stack.environ_matches({"RABBITMQ_NODENAME": "rabbit@host"}, signature)
    assert not stack.environ_matches({}, signature)
    assert stack.environ_matches(None, signature)  # unreadable: command line decides


def test_running_pid_checks_pid_file_and_cmdline(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    assert stack.running_pid(pid_file, stack.Signature()) is None  # no file
    pid_file.write_text("garbage\n")
    assert stack.read_pid(pid_file) is None
    pid_file.write_text(f"{os.getpid()}\n")
    me = stack.proc_cmdline(os.getpid())
    assert me is not None
    assert stack.running_pid(pid_file, stack.Signature(contains=(Path(me[0]).name,))) == os.getpid()
    # A live PID whose command line is something else is not ours (PID reuse).
    assert stack.running_pid(pid_file, stack.Signature(args=("-m", "no-such-module"))) is None


def test_proc_cmdline_of_missing_process() -> None:
    assert stack.proc_cmdline(2**22 + 12345) is None


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert stack.tail(log, 3) == "line 97\nline 98\nline 99"
    assert "no log" in stack.tail(tmp_path / "absent.log")


def test_wait_until_deadline_and_death() -> None:
    with pytest.raises(stack.StackError, match="not ready"):
        stack.wait_until("never", lambda: False, 0.05, interval=0.01)
    with pytest.raises(stack.StackError, match="exited"):
        stack.wait_until("dead", lambda: False, 5, alive=lambda: False, interval=0.01)
    stack.wait_until("now", lambda: True, 0)


def test_service_ports_come_from_config() -> None:
    config = dict(stack.DEFAULTS, UPLOAD_PORT="18000")
    assert stack.service_ready_url("upload", config) == "http://127.0.0.1:18000/readyz"
    with pytest.raises(stack.StackError, match="UPLOAD_PORT"):
        stack.service_ready_url("upload", dict(config, UPLOAD_PORT="x"))
