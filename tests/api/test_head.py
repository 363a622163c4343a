"""HEAD on any GET route answers like GET, without a body."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize("path", ["/healthz", "/v1/catalog", "/dashboard", "/static/upshift.js"])
def test_head_answers_as_get_without_the_body(client: TestClient, path: str) -> None:
    get = client.get(path)
    head = client.head(path)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    for name in ("content-type", "content-length"):
        assert head.headers[name] == get.headers[name], name


def test_head_of_a_protected_or_missing_resource_answers_its_error_status(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert client.head("/v1/accounts/acme").status_code == 401
    missing = client.head("/v1/accounts/acme", headers=admin_headers)
    assert missing.status_code == 404 and missing.content == b""
    assert missing.headers["content-type"] == "application/problem+json"
    # A method no route takes is still refused, with the methods it does take.
    refused = client.delete("/v1/catalog")
    assert refused.status_code == 405
