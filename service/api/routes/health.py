"""Liveness, readiness (database and catalog) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.api.problems import problem_responses
from service.api.schemas import HealthOut, ReadyOut
from service.services.readiness import readiness_checks

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    checks = await run_in_threadpool(
        readiness_checks, state.engine, getattr(state, "catalog", None)
    )
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
