"""Quotes, ranked upgrade offers and frontend session tokens for one account."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.api.deps import (
    AccountAccessDep,
    AccountIdPath,
    AdminDep,
    BillingDep,
    CatalogDep,
    ClockDep,
    ProductAccessDep,
    SessionDep,
    SignerDep,
    renew_first,
)
from service.api.offer_page import OffersPage, offers_page, render
from service.api.offer_schemas import (
    OfferIdPath,
    OfferSeenOut,
    OffersOut,
    QuoteIn,
    QuoteOut,
    SessionTokenIn,
    SessionTokenOut,
    quote_out,
)
from service.api.problems import problem_responses
from service.services.account_state import state_of
from service.services.accounts import get_account
from service.services.billing import billed_lines
from service.services.impressions import record_offer_seen
from service.services.offers import (
    OfferPlan,
    read_offer_plan,
    show_offers,
    shown_impressions,
)
from service.services.quotes import TargetChange, authoritative_quote, quote_for_account
from service.services.tokens import issue_session_token

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["offers"])


@router.post(
    "/quotes",
    response_model=QuoteOut,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
    description="Price any allowed change: proration lines, amount due now, new recurring "
    "amount and next invoice date, at a pinned proration date. A path not on the catalog's "
    "allow-list, a sales-assisted target or seats beyond the maximum is a 422 saying why; "
    "downgrades are scheduled for the end of the term (nothing due now).",
)
def create_quote(
    account_id: AccountIdPath,
    body: QuoteIn,
    request: Request,
    session: SessionDep,
    billing: BillingDep,
    catalog: CatalogDep,
    clock: ClockDep,
    _: AccountAccessDep,
) -> QuoteOut:
    now = clock.now()
    renew_first(request.app.state, account_id, now)
    account = state_of(get_account(session, account_id))
    target = TargetChange(**body.target.model_dump()).applied_to(catalog, account.plan)
    billed = billed_lines(session, catalog, account)
    quote = quote_for_account(catalog, account, billed, target, now, body.proration_date)
    return quote_out(authoritative_quote(billing, account, quote))


def _load_page(app_state: Any, account_id: str, now: datetime) -> OffersPage:
    """A cache miss: one short read-only transaction. An account whose period has ended is
    renewed first (local billing; a transaction of its own) and read again."""
    plan = _read_plan(app_state, account_id, now, current_only=True)
    if plan is None:
        renew_first(app_state, account_id, now)
        plan = _read_plan(app_state, account_id, now, current_only=False)
    assert plan is not None
    return offers_page(plan)


def _read_plan(
    app_state: Any, account_id: str, now: datetime, *, current_only: bool
) -> OfferPlan | None:
    return read_offer_plan(
        app_state.session_factory,
        app_state.catalog,
        app_state.token_signer,
        account_id,
        now,
        current_only=current_only,
    )


def offers_body(app_state: Any, page: OffersPage, now: datetime) -> bytes:
    """The response body, from the page rendered with the cached plan; every offer in it is
    recorded as an impression.

    Offers are priced by the local engine, which follows Stripe's proration rules to the minor
    unit, in Stripe mode too: a page load never waits on Stripe nor spends its rate limit
    (25 requests/s per endpoint), and an outage of Stripe's hides no offer. Stripe's own
    preview is asked at confirm, where the upgrade re-quotes under the account's row lock: a
    difference is a 409 quote_changed with the new amount, never a different charge."""
    shown = show_offers(page.plan, now)
    app_state.impressions.add(shown_impressions(page.plan, shown, now))
    return render(page, shown)


JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


@router.get(
    "/upgrade-offers",
    response_model=OffersOut,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
    description="Ranked offers (seat expansion, tier upsell, add-on, sales-assisted) with the "
    "reasons behind them, the exact quote and a signed offer token; an empty list when there is "
    "nothing to offer. Every offer returned is recorded as an impression. Offers are priced by "
    "the local Stripe-exact engine from account state cached in-process (dropped by any "
    "replica's change); the upgrade endpoint re-checks everything with the billing provider, so "
    "a stale offer is refused (409), never charged.",
)
async def get_upgrade_offers(
    account_id: AccountIdPath, request: Request, _: AccountAccessDep
) -> Response:
    state = request.app.state
    now = state.clock.now()
    page = state.offer_cache.get(account_id, now)
    if page is None:
        page = await stored_offers_page(state, account_id, now)
    if page is None:
        page = await run_in_threadpool(read_offers_page, state, account_id, now)
    body = offers_body(state, page, now)
    return Response(body, headers={name.decode(): value.decode() for name, value in JSON_HEADERS})


OFFERS_TEMPLATE = router.prefix + "/upgrade-offers"


def cached_offers_body(state: Any, account_id: str, now: datetime) -> bytes | None:
    """The page-load answer from a cached plan (api.page_loads); None on a miss."""
    page = state.offer_cache.get(account_id, now)
    return None if page is None else offers_body(state, page, now)


async def stored_offers_page(app_state: Any, account_id: str, now: datetime) -> OffersPage | None:
    """A miss answered by the page a process built and stored (api.page_store): one statement,
    awaited on the event loop; kept in the cache as a page built here is. None: not stored."""
    cache = app_state.offer_cache
    read_since = cache.generation
    page = await app_state.page_store.load(account_id, now)
    if page is not None:
        cache.put(account_id, page, read_since)
    return page


def read_offers_page(app_state: Any, account_id: str, now: datetime) -> OffersPage:
    """A miss with no stored page: the account's page read and planned, stored for every
    process, and kept in the cache (unless a change dropped the account meanwhile: see
    OfferPlanCache.put). It blocks on the database: run it in a worker thread, never on the
    event loop."""
    cache = app_state.offer_cache
    read_since = cache.generation
    page = _load_page(app_state, account_id, now)
    app_state.page_store.save(page, now)
    cache.put(account_id, page, read_since)
    return page


@router.post(
    "/session-tokens",
    response_model=SessionTokenOut,
    status_code=201,
    responses=problem_responses(401, 403, 404, 422),
    description="A short-lived token for the product frontend, bound to this one account: it "
    "may read this account's offers and quotes and upgrade it, nothing else.",
)
def create_session_token(
    account_id: AccountIdPath,
    session: SessionDep,
    clock: ClockDep,
    signer: SignerDep,
    _: AdminDep,
    body: Annotated[SessionTokenIn | None, Body()] = None,
) -> SessionTokenOut:
    get_account(session, account_id)
    ttl = (body or SessionTokenIn()).ttl_seconds
    token, expires_at = issue_session_token(signer, account_id, clock.now(), ttl)
    return SessionTokenOut(token=token, account_id=account_id, expires_at=expires_at)


@router.put(
    "/seen-offers/{offer_id}",
    response_model=OfferSeenOut,
    responses=problem_responses(401, 403, 404, 422),
    description="Report that the customer saw an offer: the product's UI displayed it (the "
    "widget does this for the offer it shows). The offer funnel's conversion is accepted of "
    "seen, not of the offers the API served. Idempotent: once per offer id, however often it is "
    "reported (a retry or a re-render counts once); the answer says when it was first seen. "
    "With the account's session token or an ingest key.",
)
def put_offer_seen(
    account_id: AccountIdPath,
    offer_id: OfferIdPath,
    session: SessionDep,
    clock: ClockDep,
    _: ProductAccessDep,
) -> OfferSeenOut:
    seen_at = record_offer_seen(session, account_id, offer_id, clock.now())
    return OfferSeenOut(account_id=account_id, offer_id=offer_id, seen_at=seen_at)
