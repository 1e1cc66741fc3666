"""Schemathesis holds the running upload service to its own OpenAPI document: generated
requests for every operation, every answer checked against the documented status codes,
content types and schemas, and never a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import Mesh

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api_schema(mesh: Mesh) -> BaseSchema:
    # Every operation, the event stream too: OpenAPI 3.2 documents it event by event
    # (`itemSchema`), which schemathesis checks each event of.
    return schemathesis.openapi.from_url(f"{mesh.upload_url}/api/v1/openapi.json")


def test_the_api_keeps_its_contract(api_schema: BaseSchema) -> None:
    # Driven by hand: schemathesis' pytest plugin does not run on pytest 9 yet.
    failures: dict[str, str] = {}
    checked = []
    for result in api_schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # Err raises here, as it should
        checked.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=20,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def keeps_contract(case: schemathesis.Case[Any]) -> None:
            # Not "every schema-valid request is accepted": what the schema calls a file or
            # a pipeline is judged by content (an image, operations of the catalogue), and
            # refused with a documented 4xx when it is not one.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        try:
            keeps_contract()
        except Exception as exc:  # every operation is checked; all failures reported
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:3000]
    assert len(checked) >= 9, checked
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_schemathesis_run_checks_all(mesh: Mesh, tmp_path: Path) -> None:
    """As an outside check runs it: `schemathesis run --checks all` (positive-data
    acceptance excluded, as above), which also sends methods a route does not have (a
    405 must say `Allow`) and reads the event stream event by event."""
    ran = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{mesh.upload_url}/api/v1/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "10",
            "--generation-deterministic",
            "--no-color",
        ],
        cwd=tmp_path,  # its caches (.schemathesis/, .hypothesis/) go there, not in the tree
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-6000:] + ran.stderr[-2000:]
