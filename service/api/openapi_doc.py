"""The committed OpenAPI document, generated from the app (a test fails when they drift)."""

from __future__ import annotations

import json
from pathlib import Path

from service.api.app import create_app
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def openapi_json() -> str:
    settings = Settings(
        database_url="sqlite://", catalog_path=REPO_ROOT / "pricing_catalog" / "catalog.yaml"
    )
    return json.dumps(create_app(settings).openapi(), indent=2, sort_keys=True) + "\n"
