"""Quotes, ranked upgrade offers and frontend session tokens for one account."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from service.api.deps import (
    AccountAccessDep,
    AccountIdPath,
    AdminDep,
    BillingDep,
    CatalogDep,
    ClockDep,
    SessionDep,
    SignerDep,
    account_principal,
    renew_first,
)
from service.api.offer_schemas import (
    OffersOut,
    QuoteIn,
    QuoteOut,
    SessionTokenIn,
    SessionTokenOut,
    offers_payload,
    quote_out,
)
from service.api.problems import problem_responses
from service.api.schemas import AccountIdPattern
from service.domain.errors import ValidationFailed
from service.services.account_state import state_of
from service.services.accounts import get_account
from service.services.billing import billed_lines
from service.services.offers import (
    AccountOffers,
    OfferInputs,
    compute_offers,
    impression_rows,
    load_offer_inputs,
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


def _load_inputs(app_state: Any, account_id: str, now: datetime) -> OfferInputs:
    """A cache miss: one short transaction (it renews an ended local period first)."""
    renew_first(app_state, account_id, now)
    with app_state.session_factory() as session, session.begin():
        account = get_account(session, account_id)
        return load_offer_inputs(session, app_state.catalog, account, now)


def _priced(app_state: Any, inputs: OfferInputs, now: datetime) -> AccountOffers:
    with app_state.session_factory() as session:
        gateway = app_state.billing_gateways(session)
        return compute_offers(app_state.catalog, inputs, now, app_state.token_signer, gateway)


@router.get(
    "/upgrade-offers",
    response_model=OffersOut,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
    description="Ranked offers (seat expansion, tier upsell, add-on, sales-assisted) with the "
    "reasons behind them, the exact quote and a signed offer token; an empty list when there is "
    "nothing to offer. Every offer returned is recorded as an impression. Offers are priced from "
    "account state cached in-process for a few seconds at most; the upgrade endpoint re-checks "
    "everything, so a stale offer is refused (409), never charged.",
)
async def get_upgrade_offers(
    account_id: AccountIdPath, request: Request, _: AccountAccessDep
) -> JSONResponse:
    return await _offers_response(request, account_id)


async def _offers_response(request: Request, account_id: str) -> JSONResponse:
    state = request.app.state
    now = state.clock.now()
    inputs = state.offer_cache.get(account_id, now)
    if inputs is None:
        inputs = await run_in_threadpool(_load_inputs, state, account_id, now)
        state.offer_cache.put(account_id, inputs)
    if state.settings.billing_backend == "local":
        # The local engine is the price authority: no provider preview, no transaction.
        result = compute_offers(state.catalog, inputs, now, state.token_signer, None)
    else:  # Stripe previews every quote over the network: off the event loop
        result = await run_in_threadpool(_priced, state, inputs, now)
    state.impressions.add(impression_rows(state.catalog, inputs, result, now))
    return JSONResponse(offers_payload(result))


_ACCOUNT_ID = re.compile(AccountIdPattern)


async def fast_upgrade_offers(request: Request) -> JSONResponse:
    """The same endpoint as `get_upgrade_offers`, without FastAPI's per-request machinery.

    The frontend calls it on every page load; FastAPI's dependency solving and validation cost
    more than pricing the offers. This plain route is matched first; the FastAPI route above
    stays for the OpenAPI document, and both share `_offers_response`, the checks and the errors.
    """
    request.scope["route"] = FAST_ROUTE  # labels the request in /metrics, as FastAPI's do
    account_id = request.path_params["account_id"]
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise ValidationFailed("invalid account id", field="account_id")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    credentials = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
        if scheme and token
        else None
    )
    await account_principal(account_id, request, credentials)
    return await _offers_response(request, account_id)


FAST_ROUTE = Route("/v1/accounts/{account_id}/upgrade-offers", fast_upgrade_offers, methods=["GET"])


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
