"""The committed OpenAPI document is exactly what the app generates."""

from __future__ import annotations

from pathlib import Path

from service.api.openapi_doc import openapi_json

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_openapi_matches_the_app() -> None:
    assert COMMITTED.read_text() == openapi_json(), "run `upshift openapi` and commit the result"


def test_every_operation_documents_problem_json() -> None:
    import json

    document = json.loads(openapi_json())
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/accounts"):
            continue
        for method, operation in operations.items():
            problems = [
                status
                for status, response in operation["responses"].items()
                if "application/problem+json" in response.get("content", {})
            ]
            assert "422" in problems, f"{method.upper()} {path} documents no 422 problem"
