"""Request dependencies: the one transaction per request, the catalog, the clock, the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.api.schemas import AccountId
from service.domain.catalog import Catalog
from service.domain.errors import DomainError, NotFound, ValidationFailed
from service.ports import BillingGateway, Clock
from service.services.account_state import changed_accounts
from service.services.api_keys import Principal, Scope, authenticate
from service.services.renewals import renew_if_due
from service.services.tokens import SESSION_PREFIX, InvalidToken, TokenSigner


class Unauthorized(DomainError):
    code = "unauthorized"
    title = "Unauthorized"
    status = 401


class Forbidden(DomainError):
    code = "forbidden"
    title = "Forbidden"
    status = 403


@contextmanager
def unit_of_work(state: Any) -> Iterator[Session]:
    """One transaction, committed when the block ends, rolled back on error.

    After the commit, accounts the transaction changed are dropped from the offer cache; also
    after a rollback, where a refusal found the cached offers stale (a 409 state_changed): then
    the stored pages of those accounts go too (the commit drops them in its own transaction),
    so that "fetch the offers again" gets fresh ones whatever made them stale.
    """
    with state.session_factory() as session:
        committed = False
        try:
            with session.begin():
                yield session
            committed = True
        finally:
            changed = changed_accounts(session)
            state.account_caches.invalidate(changed)
            if changed and not committed:
                state.page_store.drop(changed)


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request (`unit_of_work`), committed when the endpoint returns."""
    with unit_of_work(request.app.state) as session:
        yield session


# The small dependencies are async: a sync one would cost a thread-pool hop per request.
async def get_catalog(request: Request) -> Catalog:
    return request.app.state.catalog


async def get_clock(request: Request) -> Clock:
    return request.app.state.clock


async def get_signer(request: Request) -> TokenSigner:
    return request.app.state.token_signer


async def single_valued_query(request: Request) -> None:
    """Every query parameter of this API takes one value: a repeated one is ambiguous (which
    account did `?account=a&account=b` mean?), so it is refused rather than one picked."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen:
            raise ValidationFailed(
                f"query parameter '{name}' is given more than once",
                field=name,
                code="repeated_parameter",
            )
        seen.add(name)


# scope="function": commit before the response is sent, so a failed commit is the response.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
ClockDep = Annotated[Clock, Depends(get_clock)]
SignerDep = Annotated[TokenSigner, Depends(get_signer)]


def get_billing(request: Request, session: SessionDep) -> BillingGateway:
    """The billing backend, bound to the request's own transaction (local billing writes in it)."""
    return request.app.state.billing_gateways(session)


BillingDep = Annotated[BillingGateway, Depends(get_billing)]
AccountIdPath = Annotated[AccountId, Path(description="The product's own account id")]

_bearer = HTTPBearer(
    auto_error=False,
    description="A server API key (upk_…) or, on account-scoped reads and upgrades, a session "
    "token (ust_…) issued for that one account",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer credentials", code="missing_credentials")
    return credentials.credentials


def _key_principal(session: Session, raw_key: str) -> Principal:
    principal = authenticate(session, raw_key)
    if principal is None:
        raise Unauthorized("invalid or revoked credentials", code="invalid_credentials")
    return principal


def _server_key(request: Request, raw_key: str) -> Principal:
    with request.app.state.session_factory() as session:
        return _key_principal(session, raw_key)


def get_principal(request: Request, credentials: BearerDep) -> Principal:
    """The server key's principal, read in a short session of its own: the route may work on
    other connections (exports, reports), and on SQLite a request transaction holds the lock."""
    return _server_key(request, _bearer_token(credentials))


def get_principal_in_transaction(credentials: BearerDep, session: SessionDep) -> Principal:
    """The server key's principal, read in the request's transaction: one connection per
    request, for routes that do all their work in that transaction (usage ingest)."""
    return _key_principal(session, _bearer_token(credentials))


def account_reader(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A server key with `scope` (or admin), or a session token bound to exactly this account.

    A session token presented for another account gets the same 404 as an unknown account, so
    a browser holding one token learns nothing about any other account.
    """

    async def principal(
        account_id: AccountIdPath, request: Request, credentials: BearerDep
    ) -> Principal:
        raw = _bearer_token(credentials)
        if not raw.startswith(SESSION_PREFIX):
            found = await run_in_threadpool(_server_key, request, raw)
            if not found.allows(scope):
                raise Forbidden(f"this key lacks the '{scope}' scope", code="insufficient_scope")
            return found
        # Read from app state, not through Depends: this runs on every offer page load.
        return session_principal(request.app.state, raw, account_id)

    return principal


account_principal = account_reader(Scope.admin)
product_principal = account_reader(Scope.ingest)


def session_principal(state: Any, raw: str, account_id: str) -> Principal:
    """The principal of a session token bound to `account_id` (401 if not genuine or expired,
    404 if bound to another account)."""
    claims = session_claims(state, raw, account_id, state.clock.now())
    return Principal(
        key_id=f"session:{claims.get('jti')}", scopes=frozenset(), account_id=account_id
    )


def session_claims(state: Any, raw: str, account_id: str, now: datetime) -> Mapping[str, Any]:
    """`session_principal`'s checks, for the offers page-load path: the token's claims."""
    try:
        claims = state.token_signer.claims(SESSION_PREFIX, raw, now)
    except InvalidToken as exc:
        raise Unauthorized(exc.detail, code=exc.code) from None
    if claims.get("acc") != account_id:
        raise NotFound(f"account '{account_id}' not found", code="account_not_found")
    return claims


def require_scope(
    scope: Scope, principal_of: Callable[..., Principal] = get_principal
) -> Callable[[Principal], Principal]:
    # A default, not Annotated: annotations are strings here, and principal_of is a local.
    def check(principal: Principal = Depends(principal_of)) -> Principal:
        if principal.account_id is not None or not principal.allows(scope):
            raise Forbidden(f"this key lacks the '{scope.value}' scope", code="insufficient_scope")
        return principal

    return check


AdminDep = Annotated[Principal, Depends(require_scope(Scope.admin))]
# Ingest works only in the request transaction: its key is checked there too.
IngestDep = Annotated[Principal, Depends(require_scope(Scope.ingest, get_principal_in_transaction))]
FinanceDep = Annotated[Principal, Depends(require_scope(Scope.finance))]
AccountAccessDep = Annotated[Principal, Depends(account_principal)]
# What the product reports or asks about one account from its backend (ingest key) or its
# frontend (session token): entitlement checks, offers its customer saw.
ProductAccessDep = Annotated[Principal, Depends(product_principal)]


def renew_first(state: Any, account_id: str, now: datetime) -> None:
    """Local billing: roll the account into its current period before anything is priced."""
    changed = renew_if_due(
        state.session_factory, state.catalog, state.billing_gateways, account_id, now
    )
    state.account_caches.invalidate(changed)
