"""What every imagemesh service shares: settings loading that fails with one clear line,
structlog configuration, the ops endpoints (/healthz, /readyz, /metrics), the metrics
every service shares (build info, HTTP, calls to backing services) and running."""

from ._logging import configure_logging
from ._metrics import http_metrics, set_build_info, timed_call
from ._ops import Check, add_ops_routes, add_readiness_check, run_checks
from ._resources import CleanupContext, resource
from ._run import run_service
from ._settings import (
    DEVELOPMENT_SECRETS,
    ServiceSettings,
    development_refusal,
    development_secrets,
    load_settings,
    production_refusals,
    split_commas,
)

__all__ = [
    "DEVELOPMENT_SECRETS",
    "Check",
    "CleanupContext",
    "ServiceSettings",
    "add_ops_routes",
    "add_readiness_check",
    "configure_logging",
    "development_refusal",
    "development_secrets",
    "http_metrics",
    "load_settings",
    "production_refusals",
    "resource",
    "run_checks",
    "run_service",
    "set_build_info",
    "split_commas",
    "timed_call",
]
