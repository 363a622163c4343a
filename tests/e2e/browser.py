"""What the browser tests share: where Chromium is, how it is launched, where screenshots go."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Loopback only: any other host name fails to resolve, so a page cannot reach out.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
TIMEOUT_MS = 10_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}


def browser_env() -> dict[str, str]:
    """Chromium's environment: ours, less libfaketime's.

    .ci/run also runs the suite under Debian's faketime to prove it holds on any date; Chromium
    loads no page with libfaketime preloaded. The browser is only the customer's screen: the
    service it talks to, where every date is decided, still runs on the faked clock.
    """
    return {
        name: value
        for name, value in os.environ.items()
        if name != "LD_PRELOAD" and not name.startswith("FAKETIME")
    }


def browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


def new_page(browser: Any, viewport: dict[str, int]) -> Any:
    context = browser.new_context(viewport=viewport, locale="en-US", accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    return page


def screenshot(page: Any, name: str, element: Any = None) -> Path:
    """A full-page screenshot, or one element's, into test-artifacts/e2e/NAME.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if element is not None:
        element.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    return path
