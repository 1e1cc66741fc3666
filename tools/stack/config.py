"""Settings and paths: `.env.example` is the one source of the stack's defaults.

Settings: `.env.example` < `.env` (or the `--env-file`) < the real environment (for the
names the files define). Paths are derived from the repository root and the stack folder
(`.stack/`, or STACK_DIR) when a `Paths` is made, never at import time, so a caller (a
test, a second private stack) passes its own. Standard library only.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from .errors import StackError

#: The repository this package is in (tools/stack/ -> the root).
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Paths:
    """Where the stack's programs are and where it keeps its state."""

    root: Path
    stack_dir: Path

    @classmethod
    def default(cls, environ: Mapping[str, str] | None = None, root: Path = REPO_ROOT) -> Paths:
        """The repository's paths; the state under STACK_DIR if set, else `<root>/.stack`."""
        env = os.environ if environ is None else environ
        stack_dir = Path(env.get("STACK_DIR") or root / ".stack").absolute()
        return cls(root=root, stack_dir=stack_dir)

    @property
    def log_dir(self) -> Path:
        return self.stack_dir / "logs"

    @property
    def pid_dir(self) -> Path:
        return self.stack_dir / "pids"

    @property
    def rabbit_dir(self) -> Path:
        return self.stack_dir / "rabbitmq"

    @property
    def rabbit_startup_log(self) -> Path:
        return self.rabbit_dir / "log" / "startup.log"

    @property
    def couch_dir(self) -> Path:
        return self.stack_dir / "couchdb"

    @property
    def prometheus_dir(self) -> Path:
        return self.stack_dir / "prometheus"

    @property
    def prometheus_config(self) -> Path:
        return self.prometheus_dir / "prometheus.yml"

    @property
    def lock_file(self) -> Path:
        return self.stack_dir / "stack.lock"

    @property
    def tools_dir(self) -> Path:
        return self.root / "tools"

    @property
    def entry(self) -> Path:
        """What `python3 <entry> COMMAND` runs: this package."""
        return self.tools_dir / "stack"

    @property
    def venv_python(self) -> Path:
        return self.root / ".venv" / "bin" / "python"

    @property
    def pouchdb_server(self) -> Path:
        return self.tools_dir / "node_modules" / ".bin" / "pouchdb-server"

    @property
    def moto_server(self) -> Path:
        return self.tools_dir / "moto_server_keepalive.py"

    @property
    def env_example(self) -> Path:
        return self.root / ".env.example"

    @property
    def env_file(self) -> Path:
        return self.root / ".env"


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        if value[0] == '"':
            inner = inner.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        return inner
    # Unquoted: an inline comment starts at " #".
    hash_at = value.find(" #")
    if hash_at >= 0:
        value = value[:hash_at]
    return value.strip()


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse `KEY=VALUE` lines: `#` comments, blank lines, optional `export `, quotes."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").isalnum() or key[0].isdigit():
            continue
        result[key] = _unquote(value.strip())
    return result


def read_dotenv(path: Path) -> dict[str, str]:
    return parse_dotenv(path.read_text(encoding="utf-8"))


def defaults(paths: Paths | None = None) -> dict[str, str]:
    """The stack's defaults: every setting `.env.example` gives a value."""
    example = (paths or Paths.default()).env_example
    if not example.is_file():
        raise StackError(f"{example} is missing: it holds the stack's default settings")
    return read_dotenv(example)


def default_env_file(root: Path = REPO_ROOT) -> Path | None:
    """The dotenv file read over the defaults: `.env`, else `.env.example` itself."""
    for name in (".env", ".env.example"):
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None


def load_config(
    paths: Paths | None = None,
    env_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Settings: `.env.example` < dotenv file (`env_file`, else `.env`) < real environment."""
    env = os.environ if environ is None else environ
    paths = paths or Paths.default(env)
    values = defaults(paths)
    file_path = Path(env_file) if env_file is not None else default_env_file(paths.root)
    if file_path is not None and file_path.is_file():
        values.update(read_dotenv(file_path))
    for key in list(values):
        if key in env:
            values[key] = env[key]
    return Config(values, paths)


def url_port(url: str, default: int) -> int:
    return urllib.parse.urlsplit(url).port or default


@dataclass(frozen=True)
class Config:
    """The stack's settings (every value, as the services get them) and its paths, with
    typed views of what the stack itself reads. A bad value fails where it is used, naming
    the setting (so `status` still shows what it can)."""

    values: Mapping[str, str]
    paths: Paths = field(default_factory=Paths.default)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    @classmethod
    def of(cls, values: Mapping[str, str], paths: Paths | None = None) -> Config:
        """Settings given as a mapping (a test's environment), on the default paths."""
        return cls(values, paths or Paths.default())

    def replace(self, **values: str) -> Config:
        """The same settings with some values changed."""
        return Config({**self.values, **values}, self.paths)

    def __getitem__(self, key: str) -> str:
        return self.values[key]

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)

    def port(self, key: str) -> int:
        try:
            return int(self.values[key])
        except (KeyError, ValueError) as exc:
            raise StackError(
                f"setting {key} must be a port number, got {self.values.get(key)!r}"
            ) from exc

    # --- RabbitMQ

    @property
    def rabbitmq_nodename(self) -> str:
        return self["RABBITMQ_NODENAME"]

    @property
    def rabbitmq_port(self) -> int:
        return self.port("RABBITMQ_PORT")

    @property
    def rabbitmq_management_port(self) -> int:
        return self.port("RABBITMQ_MANAGEMENT_PORT")

    @property
    def rabbitmq_vhost(self) -> str:
        return self["RABBITMQ_VHOST"]

    @property
    def rabbitmq_admin(self) -> tuple[str, str]:
        """The broker's administrator: (user, password)."""
        return self["RABBITMQ_USER"], self["RABBITMQ_PASSWORD"]

    # --- CouchDB

    @property
    def couchdb_url(self) -> str:
        """The server's base URL, without a trailing slash."""
        return self["COUCHDB_URL"].rstrip("/")

    @property
    def couchdb_port(self) -> int:
        return url_port(self["COUCHDB_URL"], 5984)

    @property
    def couchdb_db(self) -> str:
        return self["COUCHDB_DB"]

    @property
    def couchdb_admin(self) -> tuple[str, str]:
        return self["COUCHDB_ADMIN_USER"], self["COUCHDB_ADMIN_PASSWORD"]

    @property
    def couchdb_auditor(self) -> tuple[str, str]:
        return self["COUCHDB_AUDITOR_USER"], self["COUCHDB_AUDITOR_PASSWORD"]

    # --- S3

    @property
    def s3_url(self) -> str:
        return self["S3_URL"]

    @property
    def s3_port(self) -> int:
        return url_port(self["S3_URL"], 9000)

    @property
    def s3_region(self) -> str:
        return self["S3_REGION"]

    @property
    def s3_buckets(self) -> list[str]:
        return [self["S3_INPUT_BUCKET"], self["S3_OUTPUT_BUCKET"]]

    # --- services and tools

    @property
    def prometheus_port(self) -> int:
        return self.port("PROMETHEUS_PORT")

    @property
    def shutdown_timeout(self) -> float:
        """How long a service drains in-flight work after SIGTERM (30 s if unreadable)."""
        try:
            return float(self.values.get("SHUTDOWN_TIMEOUT_SECONDS", "30"))
        except ValueError:
            return 30.0
