"""Browser fixtures: Debian's Chromium driven by Playwright against the app on a loopback port.

Skipped, with the reason, when Playwright or /usr/bin/chromium is missing (CI installs both).
Playwright's own browser download is never used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from service.api.app import create_app
from service.services.demo import seed_demo
from service.settings import Settings
from tests.e2e.browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    DESKTOP,
    PHONE,
    browser_env,
    browser_missing,
    new_page,
)
from tests.fakes.clock import FakeClock
from tests.live_server import live_server


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    reason = browser_missing()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, env=browser_env(), timeout=30_000
        )
        yield launched
        launched.close()


@pytest.fixture
def demo_app(db: Engine, settings: Settings, clock: FakeClock) -> FastAPI:
    """The service in demo mode on the test database, with the demo account seeded."""
    app = create_app(settings.model_copy(update={"seed_demo": True}), clock=clock, engine=db)
    seed_demo(app.state.session_factory, app.state.catalog, clock)
    return app


@pytest.fixture
def base_url(demo_app: FastAPI) -> Iterator[str]:
    with live_server(demo_app) as url:
        yield url


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        yield client


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    opened = new_page(browser, DESKTOP)
    yield opened
    opened.context.close()
    assert opened.errors == [], f"JavaScript errors on the page: {opened.errors}"


@pytest.fixture
def phone_page(browser: Any) -> Iterator[Any]:
    opened = new_page(browser, PHONE)
    yield opened
    opened.context.close()
    assert opened.errors == [], f"JavaScript errors on the page: {opened.errors}"
