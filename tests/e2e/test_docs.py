"""/docs works offline: Swagger UI's files come from the service, not a CDN."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient


def test_docs_reference_only_the_services_own_files(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert not re.search(r"(src|href)=\"?'?https?://", docs.text)
    for asset in re.findall(r"['\"](/docs-assets/[^'\"]+)['\"]", docs.text):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_docs_render_the_api_in_a_browser_without_internet(page: Any, base_url: str) -> None:
    """The browser tests resolve no host but 127.0.0.1 (tests/e2e/browser.py)."""
    page.goto(f"{base_url}/docs")
    page.wait_for_selector('[data-path="/v1/accounts/{account_id}/upgrade-offers"]')
    assert page.title() == "Upshift API"
