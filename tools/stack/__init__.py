"""imagemesh local stack: RabbitMQ, a CouchDB-compatible server, an S3 server and the services.

Everything runs on loopback, without containers, and keeps its state under `.stack/`
(or the directory STACK_DIR names, e.g. for a second, private set of services):

    .stack/rabbitmq/   node data (mnesia), logs, generated rabbitmq.conf, enabled_plugins
    .stack/couchdb/    PouchDB Server data, its config.json and log
    .stack/prometheus/ generated prometheus.yml and its data (optional: up-observability)
    .stack/logs/       one <component>.log per process we start (+ <service>.supervisor.log)
    .stack/pids/       one <component>.pid per process we start (+ <service>.supervisor.json)

Run it as `python3 tools/stack COMMAND` (`make up`, `make down`, ...). Commands: deps
[--test], infra, up, up-observability, down, status, logs [NAME], parking [ARGS...],
audit [ARGS...], supervise NAME [-- CMD...].

Each service runs under `supervise`, a small supervisor (this tool, as its own process) that
restarts it with exponential back-off when it exits by itself, as compose's
`restart: unless-stopped` does, and logs each restart as one JSON line. Its pid file holds
the supervisor's pid: SIGTERM to the supervisor drains and stops the service, then it exits.

Settings come from `.env.example` (the one source of the defaults), then `.env`, then the
real environment (`config`); paths from the repository root and the stack folder (`Paths`),
passed in, never import-time globals.

Standard library only, so `deps` runs with a bare `python3` before the virtualenv exists;
bucket provisioning imports boto3 lazily (run that with `.venv/bin/python`), and CouchDB
provisioning runs `.venv/bin/python -m provenancedb.migrate`.

Modules, one responsibility each: errors, config, procs, httpclient, deps, components, lock,
infra.rabbitmq, infra.couchdb, infra.s3, supervisor, services, lifecycle, observability,
status, cli. The test suite imports this package (`sys.path.insert(0, "tools");
import stack`); what it uses is re-exported here.
"""

from .cli import TOOLS, main, split_passthrough, tool_command
from .components import (
    REPLICATED,
    SERVICES,
    Component,
    couch_component,
    epmd_component,
    infra_components,
    instance_port,
    known_instances,
    prometheus_component,
    rabbit_component,
    s3_component,
    service_component,
    service_instances,
    service_of,
    service_ready_url,
    supervisor_log_path,
    supervisor_state_path,
)
from .config import Config, Paths, default_env_file, defaults, load_config, parse_dotenv
from .deps import apt_install, ensure_deps
from .errors import StackError, say
from .httpclient import HttpAnswer, http, http_ok, wait_http_ok
from .infra.couchdb import (
    COUCH_ADMIN_ONLY,
    COUCH_AUDITOR_ONLY,
    couch_argv,
    couch_env,
    provision_couchdb,
    start_couch,
    wait_couch,
)
from .infra.rabbitmq import (
    provision_rabbitmq,
    provision_service_users,
    service_rabbit_user,
    start_rabbit,
    wait_rabbit,
)
from .infra.s3 import provision_s3, s3_client, start_s3, wait_s3
from .lifecycle import down, ensure_infra, stop_component, up
from .lock import stack_lock
from .observability import prometheus_config, prometheus_url, render_prometheus_config
from .procs import (
    Signature,
    cmdline_matches,
    environ_matches,
    proc_cmdline,
    proc_ppid,
    read_pid,
    running_pid,
    stop_pid,
    tail,
    wait_until,
)
from .services import (
    ensure_services,
    service_env,
    service_stop_timeout,
    start_supervised,
    stop_services,
    supervise,
)
from .status import print_status, readiness, service_row, status_rows
from .supervisor import (
    Supervisor,
    SupervisorState,
    backoff_delay,
    read_supervisor_state,
    supervised_child,
)

__all__ = [
    "COUCH_ADMIN_ONLY",
    "COUCH_AUDITOR_ONLY",
    "REPLICATED",
    "SERVICES",
    "TOOLS",
    "Component",
    "Config",
    "HttpAnswer",
    "Paths",
    "Signature",
    "StackError",
    "Supervisor",
    "SupervisorState",
    "apt_install",
    "backoff_delay",
    "cmdline_matches",
    "couch_argv",
    "couch_component",
    "couch_env",
    "default_env_file",
    "defaults",
    "down",
    "ensure_deps",
    "ensure_infra",
    "ensure_services",
    "environ_matches",
    "epmd_component",
    "http",
    "http_ok",
    "infra_components",
    "instance_port",
    "known_instances",
    "load_config",
    "main",
    "parse_dotenv",
    "print_status",
    "proc_cmdline",
    "proc_ppid",
    "prometheus_component",
    "prometheus_config",
    "prometheus_url",
    "provision_couchdb",
    "provision_rabbitmq",
    "provision_s3",
    "provision_service_users",
    "rabbit_component",
    "read_pid",
    "read_supervisor_state",
    "readiness",
    "render_prometheus_config",
    "running_pid",
    "s3_client",
    "s3_component",
    "say",
    "service_component",
    "service_env",
    "service_instances",
    "service_of",
    "service_rabbit_user",
    "service_ready_url",
    "service_row",
    "service_stop_timeout",
    "split_passthrough",
    "stack_lock",
    "start_couch",
    "start_rabbit",
    "start_s3",
    "start_supervised",
    "status_rows",
    "stop_component",
    "stop_pid",
    "stop_services",
    "supervise",
    "supervised_child",
    "supervisor_log_path",
    "supervisor_state_path",
    "tail",
    "tool_command",
    "up",
    "wait_couch",
    "wait_http_ok",
    "wait_rabbit",
    "wait_s3",
    "wait_until",
]
