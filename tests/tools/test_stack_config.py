"""tools/stack's settings: the dotenv parser, .env.example as the one source of the
defaults, the precedence of .env and the environment, and the paths."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import stack

ROOT = Path(__file__).resolve().parents[2]


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


def test_load_config_precedence(paths: stack.Paths, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RABBITMQ_VHOST=from-file\nCOUCHDB_DB=from-file\nEXTRA=x\n")
    environ = {"COUCHDB_DB": "from-env", "UNRELATED": "y"}
    config = stack.load_config(paths, env_file=env_file, environ=environ)
    assert config["RABBITMQ_VHOST"] == "from-file"
    assert config["COUCHDB_DB"] == "from-env"
    assert config["EXTRA"] == "x"
    assert config["S3_INPUT_BUCKET"] == stack.defaults(paths)["S3_INPUT_BUCKET"]
    assert "UNRELATED" not in config.values


def test_load_config_missing_file_gives_the_env_example_defaults(paths: stack.Paths) -> None:
    config = stack.load_config(paths, env_file=paths.root / "absent", environ={})
    assert dict(config.values) == stack.parse_dotenv(paths.env_example.read_text())


def a_root(tmp_path: Path, **changes: str) -> Path:
    """A copy of the repository's .env.example (with `changes`) in a folder of its own."""
    root = tmp_path / "root"
    root.mkdir()
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        name = line.partition("=")[0]
        lines.append(f"{name}={changes.pop(name)}" if name in changes else line)
    assert not changes, f"not in .env.example: {changes}"
    (root / ".env.example").write_text("\n".join(lines) + "\n")
    return root


def test_a_default_changed_in_env_example_is_what_the_stack_uses(tmp_path: Path) -> None:
    root = a_root(tmp_path, UPLOAD_PORT="18123", RABBITMQ_NODENAME="other@localhost")
    paths = stack.Paths(root=root, stack_dir=tmp_path / "stack")
    config = stack.load_config(paths, environ={})
    assert stack.service_ready_url(config, "upload") == "http://127.0.0.1:18123/readyz"
    assert stack.rabbit_component(config).signature.environ[0] == (
        "RABBITMQ_NODENAME",
        "other@localhost",
    )
    # A .env overrides it, the environment overrides both.
    (root / ".env").write_text("UPLOAD_PORT=18124\n")
    assert stack.load_config(paths, environ={}).port("UPLOAD_PORT") == 18124
    assert stack.load_config(paths, environ={"UPLOAD_PORT": "18125"}).port("UPLOAD_PORT") == 18125


def test_the_command_line_reads_env_example(tmp_path: Path) -> None:
    """The tool itself (a copy, beside a changed .env.example), with a bare python3 and an
    empty environment, as `make status` runs it before any virtualenv exists."""
    root = a_root(tmp_path, UPLOAD_PORT="18126")
    shutil.copytree(
        ROOT / "tools" / "stack",
        root / "tools" / "stack",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    constants = Path("libs", "messaging", "messaging", "constants.py")  # the service names
    (root / constants).parent.mkdir(parents=True)
    shutil.copy(ROOT / constants, root / constants)
    result = subprocess.run(
        [shutil.which("python3") or sys.executable, "-S", "tools/stack", "status"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (0, 3), result.stderr  # 3: something is not ours / down
    assert "http://127.0.0.1:18126/readyz" in result.stdout
    assert (root / ".stack").is_dir() is False  # status writes nothing


def test_without_env_example_the_stack_refuses(tmp_path: Path) -> None:
    paths = stack.Paths(root=tmp_path, stack_dir=tmp_path / "stack")
    with pytest.raises(stack.StackError, match=r"\.env\.example is missing"):
        stack.load_config(paths, environ={})


def test_every_setting_the_stack_reads_has_a_default(config: stack.Config) -> None:
    """The typed views read only what .env.example defines (no default is in the code)."""
    views = [name for name, value in vars(stack.Config).items() if isinstance(value, property)]
    assert len(views) > 10
    for name in views:
        getattr(config, name)  # a KeyError or StackError here: a setting without a default
    for service in stack.SERVICES:
        assert stack.instance_port(config, service) > 0
        assert stack.service_rabbit_user(config, service)[1]


def test_default_env_file_prefers_dotenv(tmp_path: Path) -> None:
    assert stack.default_env_file(tmp_path) is None
    (tmp_path / ".env.example").write_text("A=1\n")
    assert stack.default_env_file(tmp_path) == tmp_path / ".env.example"
    (tmp_path / ".env").write_text("A=2\n")
    assert stack.default_env_file(tmp_path) == tmp_path / ".env"


def test_a_bad_port_names_its_setting(config: stack.Config) -> None:
    assert stack.service_ready_url(config, "upload") == "http://127.0.0.1:8000/readyz"
    moved = config.replace(UPLOAD_PORT="18000")
    assert stack.service_ready_url(moved, "upload") == "http://127.0.0.1:18000/readyz"
    with pytest.raises(stack.StackError, match="UPLOAD_PORT"):
        stack.service_ready_url(config.replace(UPLOAD_PORT="x"), "upload")


def test_config_values_cannot_be_changed_in_place(config: stack.Config) -> None:
    with pytest.raises(TypeError):
        config.values["UPLOAD_PORT"] = "1"  # type: ignore[index]


def test_stack_dir_comes_from_the_environment(tmp_path: Path) -> None:
    code = "import stack; p = stack.Paths.default(); print(p.pid_dir); print(p.log_dir)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "tools",
        env={**os.environ, "STACK_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == [str(tmp_path / "pids"), str(tmp_path / "logs")]
    assert stack.Paths.default({}).stack_dir == ROOT / ".stack"
