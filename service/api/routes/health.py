"""Liveness, readiness (database and catalog) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.adapters.db import ping
from service.api.problems import problem_responses
from service.api.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
async def readyz(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await run_in_threadpool(ping, request.app.state.engine)
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports any failure instead of raising it
        checks["database"] = f"error: {type(exc).__name__}"
    catalog = getattr(request.app.state, "catalog", None)
    checks["catalog"] = f"ok ({catalog.version})" if catalog is not None else "error: not loaded"
    ready = all(value.startswith("ok") for value in checks.values())
    body = ReadyOut(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}
    | problem_responses(),
)
async def metrics(request: Request) -> Response:
    return Response(
        request.app.state.metrics.exposition(),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
