"""Request dependencies: the one transaction per request, the catalog, the clock, the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.domain.catalog import Catalog
from service.domain.errors import DomainError
from service.ports import Clock
from service.services.api_keys import Principal, Scope, authenticate


class Unauthorized(DomainError):
    code = "unauthorized"
    title = "Unauthorized"
    status = 401


class Forbidden(DomainError):
    code = "forbidden"
    title = "Forbidden"
    status = 403


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed when the endpoint returns, rolled back on error."""
    factory = request.app.state.session_factory
    with factory() as session, session.begin():
        yield session


def get_catalog(request: Request) -> Catalog:
    return request.app.state.catalog


def get_clock(request: Request) -> Clock:
    return request.app.state.clock


# scope="function": commit before the response is sent, so a failed commit is the response.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
ClockDep = Annotated[Clock, Depends(get_clock)]

_bearer = HTTPBearer(auto_error=False, description="A server API key (upk_…)")


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer credentials", code="missing_credentials")
    with request.app.state.session_factory() as session:
        principal = authenticate(session, credentials.credentials)
    if principal is None:
        raise Unauthorized("invalid or revoked credentials", code="invalid_credentials")
    return principal


def require_scope(scope: Scope) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.account_id is not None or not principal.allows(scope):
            raise Forbidden(f"this key lacks the '{scope.value}' scope", code="insufficient_scope")
        return principal

    return check


AdminDep = Annotated[Principal, Depends(require_scope(Scope.admin))]
IngestDep = Annotated[Principal, Depends(require_scope(Scope.ingest))]
FinanceDep = Annotated[Principal, Depends(require_scope(Scope.finance))]
