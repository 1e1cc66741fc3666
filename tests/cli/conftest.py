from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .fake import FakeApi, serving


@pytest.fixture
async def fake() -> AsyncIterator[FakeApi]:
    """A scripted stand-in for the public API, served on a free local port."""
    async with serving(FakeApi()) as api:
        yield api
