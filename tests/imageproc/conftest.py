from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from imageproc.app import create_app
from imageproc.settings import Settings
from pipeline import harden_vips
from tests.conftest import settings_from


@pytest.fixture(autouse=True, scope="session")
def _hardened() -> None:
    """As the service does at start: only fuzzed loaders, no operation cache."""
    harden_vips()


@pytest.fixture(scope="module")
async def imageproc(test_env: dict[str, str]) -> AsyncIterator[None]:
    """The imageproc service in-process, serving RPC on the session's vhost."""
    settings: Settings = settings_from({**test_env, "IMAGEPROC_CONCURRENCY": "2"}, Settings)
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    yield
    await server.close()
