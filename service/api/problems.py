"""RFC 9457 problem+json for every error: ours, FastAPI's own 404/405/422 and the unexpected."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.domain.errors import DomainError

log = logging.getLogger("upshift.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


class FieldError(BaseModel):
    field: str
    message: str
    code: str


class Problem(BaseModel):
    """An RFC 9457 problem document with Upshift's stable `code` and the offending `field`."""

    type: str = Field(description="A URI reference naming the problem type")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str = Field(description="Stable machine-readable code")
    field: str | None = Field(default=None, description="The offending field, dotted path")
    errors: list[FieldError] | None = None


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    field: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> JSONResponse:
    problem = Problem(
        type=f"/problems/{code}",
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        code=code,
        field=field,
        errors=errors,
    )
    return JSONResponse(
        {**problem.model_dump(exclude_none=True), **(extra or {})},
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'addons', 'x') -> 'addons.x'; ('body', 'events', 3, 'qty') -> 'events[3].qty'."""
    parts = list(loc)
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or str(loc[0] if loc else "body")


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    request.app.state.metrics.problems.labels(exc.code).inc()
    headers = None
    if exc.retry_after_s is not None:
        headers = {"Retry-After": str(exc.retry_after_s)}
    return problem_response(
        request,
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        field=exc.field,
        headers=headers,
        extra=exc.extra,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(field=field_path(e["loc"]), message=str(e["msg"]), code=str(e["type"]))
        for e in exc.errors()
    ]
    first = errors[0] if errors else None
    return problem_response(
        request,
        status=422,
        code="validation_error",
        title="Invalid request",
        detail=f"{first.field}: {first.message}" if first else "invalid request",
        field=first.field if first else None,
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # The framework's only 400 is a body it could not parse (bad bytes, broken multipart):
        # a malformed payload, which this API reports as 422 like any other.
        return problem_response(
            request,
            status=422,
            code="malformed_body",
            title="Invalid request",
            detail=str(exc.detail),
            field="body",
        )
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(
        request,
        status=exc.status_code,
        code=code,
        title=code.replace("_", " ").capitalize(),
        detail=detail,
        headers=headers or None,
    )


def _allowed_methods(request: Request) -> list[str]:
    # Starlette names only the first route that matched the path; a resource whose GET and PUT
    # are separate routes must list both.
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _stale_state(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(
        request,
        status=409,
        code="state_changed",
        title="Conflict",
        detail="the account changed concurrently; read it again and retry",
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        status=500,
        code="internal_error",
        title="Internal error",
        detail="an unexpected error occurred; it has been logged",
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StaleDataError, _stale_state)
    app.add_exception_handler(Exception, _unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry for an endpoint's documented problems."""
    return {
        status: {
            "model": Problem,
            "description": _HTTP_CODES.get(status, "error").replace("_", " "),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
