"""The CouchDB-compatible server (PouchDB Server): start, readiness, and provisioning (the
admin, then `python -m provenancedb.migrate` as that admin)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ..components import check_port_free, couch_component, failure
from ..config import Config
from ..errors import StackError, say
from ..httpclient import http, wait_http_ok
from ..procs import spawn
from .rabbitmq import quote

COUCH_TIMEOUT = 60.0
#: Settings only CouchDB provisioning gets, and those only operator tools get (audit).
COUCH_ADMIN_ONLY = ("COUCHDB_ADMIN_USER", "COUCHDB_ADMIN_PASSWORD")
COUCH_AUDITOR_ONLY = ("COUCHDB_AUDITOR_USER", "COUCHDB_AUDITOR_PASSWORD")


def start_couch(config: Config) -> bool:
    """Start PouchDB Server unless running; True if it was started."""
    component = couch_component(config)
    if component.pid() is not None:
        return False
    server = config.paths.pouchdb_server
    if not server.exists():
        raise StackError("PouchDB Server is not installed: run `python3 tools/stack deps`")
    port = config.couchdb_port
    check_port_free(component, "127.0.0.1", port)
    couch_dir = config.paths.couch_dir
    data = couch_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    config_json = couch_dir / "config.json"
    if not config_json.exists():
        config_json.write_text(
            json.dumps({"log": {"file": str(couch_dir / "log.txt")}}, indent=2) + "\n"
        )
    argv = couch_argv(data, config_json, port, server)
    spawn(argv, couch_env(), component.log_path, component.pid_path, cwd=couch_dir)
    return True


def couch_argv(data: Path, config_json: Path, port: int, server: Path) -> list[str]:
    return [
        str(server),
        "--dir",
        str(data),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(config_json),
        "--no-color",
    ]


def couch_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """PouchDB Server's environment. It predates Node 15, which ends the process on an
    unhandled promise rejection; some of its refusals lead to one (a non-admin's
    `PUT /<new db>`; the next database opened after a non-admin's `DELETE /<db>`), so
    any client could stop it: warn instead (provenancedb/store.py has the rest)."""
    env = dict(os.environ if environ is None else environ)
    options = env.get("NODE_OPTIONS", "")
    if "--unhandled-rejections" not in options:
        env["NODE_OPTIONS"] = f"{options} --unhandled-rejections=warn".strip()
    return env


def wait_couch(config: Config, timeout: float = COUCH_TIMEOUT) -> None:
    component = couch_component(config)
    try:
        wait_http_ok(f"{config.couchdb_url}/", timeout, alive=component.is_running)
    except StackError as exc:
        raise failure(component, str(exc)) from None


def _ensure_admin(config: Config) -> None:
    """Leave admin party (create the admin) unless the admin exists already."""
    base = config.couchdb_url
    auth = config.couchdb_admin
    session = http("GET", f"{base}/_session", auth=auth)
    roles: list[str] = []
    if session.status == 200:
        roles = list(session.json().get("userCtx", {}).get("roles", []))
        name = session.json().get("userCtx", {}).get("name")
        if name != auth[0]:
            roles = []
    if "_admin" in roles:
        return
    answer = http(
        "PUT", f"{base}/_config/admins/{quote(auth[0])}", body=json.dumps(auth[1]).encode()
    )
    if answer.status != 200:
        raise StackError(
            f"couchdb: cannot create admin {auth[0]!r} ({answer.status}); the server has "
            f"other admins: fix COUCHDB_ADMIN_USER/COUCHDB_ADMIN_PASSWORD (COUCHDB_USER "
            f"is provenancedb's own user now) or remove {config.paths.couch_dir}"
        )
    say(f"couchdb: admin {auth[0]!r} created (admin party is over)")


def provision_couchdb(config: Config, db: str | None = None) -> None:
    """Leave admin party (create the admin) if needed, then provision database `db` with
    `python -m provenancedb.migrate` as that admin: the writer and auditor users, the
    database, its `_security`, the design document (views, append-only validation) and
    the indexes. The services never get the admin's credentials (`service_env`)."""
    db = db or config.couchdb_db
    _ensure_admin(config)
    python = config.paths.venv_python
    if not python.exists():
        raise StackError(f"couchdb: provisioning needs {python}: run `make venv`")
    migrate = subprocess.run(
        [str(python), "-m", "provenancedb.migrate"],
        env={**os.environ, **config.values, "COUCHDB_DB": db},
        cwd=config.paths.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for line in migrate.stdout.splitlines():
        if not line.endswith("(0 change(s))"):
            say(f"couchdb: {line.removeprefix('provenancedb.migrate: ')}")
    if migrate.returncode != 0:
        raise StackError(f"couchdb: {migrate.stderr.strip() or migrate.stdout.strip()}")
