"""Readiness: whether this process can serve, check by check (the database, the catalog)."""

from __future__ import annotations

from sqlalchemy import Engine

from service.adapters.db import ping
from service.domain.catalog import Catalog


def readiness_checks(engine: Engine, catalog: Catalog | None) -> dict[str, str]:
    """Each check's outcome, "ok …" or "error: …"; any failure is reported, never raised."""
    checks: dict[str, str] = {}
    try:
        ping(engine)
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports any failure instead of raising it
        checks["database"] = f"error: {type(exc).__name__}"
    checks["catalog"] = f"ok ({catalog.version})" if catalog is not None else "error: not loaded"
    return checks
