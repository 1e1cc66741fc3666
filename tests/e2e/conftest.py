"""The browser pages of the end-to-end tests: a fresh Chromium context on the test mesh's
upload service, at desktop width (`page`) or phone width (`phone`). A test module that
needs another viewport defines its own `page`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page

from tests.browser import PHONE, page_on
from tests.conftest import Mesh


@pytest.fixture
async def page(browser: Browser, mesh: Mesh) -> AsyncIterator[Page]:
    async with page_on(browser, mesh.upload_url) as opened:
        yield opened


@pytest.fixture
async def phone(browser: Browser, mesh: Mesh) -> AsyncIterator[Page]:
    async with page_on(browser, mesh.upload_url, PHONE) as opened:
        yield opened
