"""Entitlement checks for the product's own feature gates, on the offers' cached read path."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from service.api.deps import AccountIdPath, ProductAccessDep, renew_first
from service.api.problems import problem_responses
from service.api.routes.offers import JSON_HEADERS
from service.domain.entitlements import Entitlement, Entitlements
from service.domain.errors import NotFound
from service.services.entitlements import read_entitlements

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["entitlements"])


class EntitlementOut(BaseModel):
    feature: str
    kind: str = Field(description="capacity, metered, boolean or seats")
    allowed: bool = Field(
        description="boolean: granted by the tier or an add-on; counted: something remains"
    )
    limit: int | bool | None = Field(description="null = unlimited; true/false for on/off")
    used: int | None = Field(description="null for a boolean feature")
    remaining: int | None = Field(description="limit - used, 0 at or over it; null: unlimited")
    resets_at: datetime | None = Field(description="when a metered counter starts again at 0")

    @classmethod
    def of(cls, entitlement: Entitlement) -> EntitlementOut:
        return cls(
            feature=entitlement.feature,
            kind=entitlement.kind,
            allowed=entitlement.allowed,
            limit=entitlement.limit,
            used=entitlement.used,
            remaining=entitlement.remaining,
            resets_at=entitlement.resets_at,
        )


class EntitlementsOut(BaseModel):
    account_id: str
    at: datetime
    features: list[EntitlementOut]


FeaturePath = Annotated[str, Path(min_length=1, max_length=64, description="A catalog feature")]
ACCESS = (
    "With an ingest or admin key (the product's backend) or a session token for this account "
    "(its frontend). Answered from the account's state cached like the offers and dropped by "
    "every change any replica commits."
)


ENTITLEMENTS_TEMPLATE = router.prefix + "/entitlements"


def entitlements_body(found: Entitlements, now: datetime) -> bytes:
    """The JSON of every gate: what the route and the page-load path (api.page_loads) send."""
    return (
        EntitlementsOut(
            account_id=found.account_id,
            at=now,
            features=[EntitlementOut.of(e) for e in found.features.values()],
        )
        .model_dump_json()
        .encode()
    )


def cached_entitlements_body(state: Any, account_id: str, now: datetime) -> bytes | None:
    found = state.entitlement_cache.get(account_id, now)
    return None if found is None else entitlements_body(found, now)


async def _entitlements(request: Request, account_id: str) -> tuple[Entitlements, datetime]:
    state = request.app.state
    now = state.clock.now()
    found = state.entitlement_cache.get(account_id, now)
    if found is None:
        found = await run_in_threadpool(read_account_entitlements, state, account_id, now)
    return found, now


def read_account_entitlements(state: Any, account_id: str, now: datetime) -> Entitlements:
    """A miss: one short read-only transaction, as for the offers, kept in the cache; an
    account whose period has ended is renewed first (local billing) and read again. It blocks
    on the database: run it in a worker thread, never on the event loop."""
    factory, catalog, cache = state.session_factory, state.catalog, state.entitlement_cache
    read_since = cache.generation
    found = read_entitlements(factory, catalog, account_id, now, current_only=True)
    if found is None:
        renew_first(state, account_id, now)
        found = read_entitlements(factory, catalog, account_id, now, current_only=False)
    assert found is not None
    cache.put(account_id, found, read_since)
    return found


@router.get(
    "/entitlements",
    response_model=EntitlementsOut,
    responses=problem_responses(401, 403, 404, 422),
    description="Every feature's gate: allowed, limit, used, remaining, resets_at. " + ACCESS,
)
async def list_entitlements(
    account_id: AccountIdPath, request: Request, _: ProductAccessDep
) -> Response:
    found, now = await _entitlements(request, account_id)
    return Response(
        entitlements_body(found, now),
        headers={name.decode(): value.decode() for name, value in JSON_HEADERS},
    )


@router.get(
    "/entitlements/{feature}",
    response_model=EntitlementOut,
    responses=problem_responses(401, 403, 404, 422),
    description="One feature's gate (404 `unknown_feature` for a feature not in the catalog). "
    + ACCESS,
)
async def get_entitlement(
    account_id: AccountIdPath, feature: FeaturePath, request: Request, _: ProductAccessDep
) -> EntitlementOut:
    found, _now = await _entitlements(request, account_id)
    entitlement = found.features.get(feature)
    if entitlement is None:
        raise NotFound(
            f"{feature!r} is not a feature of the catalog", field="feature", code="unknown_feature"
        )
    return EntitlementOut.of(entitlement)
