"""Entitlement checks for the product's own feature gates, on the offers' cached read path."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, TypeAdapter
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


@dataclass(frozen=True, slots=True)
class EntitlementsPage:
    """An account's gates with their JSON rendered once: only `at` (the moment of the answer)
    is put in on each check, between `head` and `tail`."""

    found: Entitlements
    head: bytes
    tail: bytes

    @property
    def period_end(self) -> datetime:  # what the account caches expire on
        return self.found.valid_until


_MOMENT = TypeAdapter(datetime)  # serializes a moment as the response model does
_AT_MARK = datetime(1, 1, 1, tzinfo=UTC)  # no gate's time: the spot where `at` goes


def entitlements_page(found: Entitlements) -> EntitlementsPage:
    text = (
        EntitlementsOut(
            account_id=found.account_id,
            at=_AT_MARK,
            features=[EntitlementOut.of(e) for e in found.features.values()],
        )
        .model_dump_json()
        .encode()
    )
    head, tail = text.split(_MOMENT.dump_json(_AT_MARK))
    return EntitlementsPage(found, head, tail)


def entitlements_body(page: EntitlementsPage, now: datetime) -> bytes:
    """The JSON of every gate at `now`: what the route and the page-load path (api.page_loads)
    send, byte for byte EntitlementsOut's."""
    return page.head + _MOMENT.dump_json(now) + page.tail


def cached_entitlements_body(state: Any, account_id: str, now: datetime) -> bytes | None:
    page = state.entitlement_cache.get(account_id, now)
    return None if page is None else entitlements_body(page, now)


async def _entitlements(request: Request, account_id: str) -> tuple[EntitlementsPage, datetime]:
    state = request.app.state
    now = state.clock.now()
    page = state.entitlement_cache.get(account_id, now)
    if page is None:
        page = await run_in_threadpool(read_account_entitlements, state, account_id, now)
    return page, now


def read_account_entitlements(state: Any, account_id: str, now: datetime) -> EntitlementsPage:
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
    page = entitlements_page(found)
    cache.put(account_id, page, read_since)
    return page


@router.get(
    "/entitlements",
    response_model=EntitlementsOut,
    responses=problem_responses(401, 403, 404, 422),
    description="Every feature's gate: allowed, limit, used, remaining, resets_at. " + ACCESS,
)
async def list_entitlements(
    account_id: AccountIdPath, request: Request, _: ProductAccessDep
) -> Response:
    page, now = await _entitlements(request, account_id)
    return Response(
        entitlements_body(page, now),
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
    page, _now = await _entitlements(request, account_id)
    entitlement = page.found.features.get(feature)
    if entitlement is None:
        raise NotFound(
            f"{feature!r} is not a feature of the catalog", field="feature", code="unknown_feature"
        )
    return EntitlementOut.of(entitlement)
