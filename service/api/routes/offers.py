"""Quotes, ranked upgrade offers and frontend session tokens for one account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from service.api.deps import (
    AccountAccessDep,
    AccountIdPath,
    AdminDep,
    CatalogDep,
    ClockDep,
    SessionDep,
    SignerDep,
)
from service.api.offer_schemas import (
    OfferOut,
    OffersOut,
    QuoteIn,
    QuoteOut,
    SessionTokenIn,
    SessionTokenOut,
    money_out,
    plan_out,
    quote_out,
)
from service.api.problems import problem_responses
from service.services.accounts import get_account, plan_of
from service.services.offers import PricedOffer, is_sales_assisted, upgrade_offers
from service.services.quotes import TargetChange, quote_for_account
from service.services.tokens import issue_session_token

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["offers"])


@router.post(
    "/quotes",
    response_model=QuoteOut,
    responses=problem_responses(401, 403, 404, 409, 422),
    description="Price any allowed change: proration lines, amount due now, new recurring "
    "amount and next invoice date, at a pinned proration date. A path not on the catalog's "
    "allow-list, a sales-assisted target or seats beyond the maximum is a 422 saying why; "
    "downgrades are scheduled for the end of the term (nothing due now).",
)
def create_quote(
    account_id: AccountIdPath,
    body: QuoteIn,
    session: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    _: AccountAccessDep,
) -> QuoteOut:
    account = get_account(session, account_id)
    target = TargetChange(**body.target.model_dump()).applied_to(catalog, plan_of(account))
    return quote_out(quote_for_account(catalog, account, target, clock.now(), body.proration_date))


def offer_out(offer: PricedOffer) -> OfferOut:
    candidate = offer.candidate
    quote = offer.quote
    return OfferOut(
        id=offer.id,
        engine=candidate.engine,
        action="contact_sales" if is_sales_assisted(offer) else "upgrade",
        reasons=list(candidate.reasons),
        signal_ids=list(candidate.signal_ids),
        score=offer.score,
        target_tier=candidate.target_tier,
        target=plan_out(candidate.target) if candidate.target else None,
        price=money_out(quote.new_recurring.minor, quote.new_recurring.currency) if quote else None,
        quote=quote_out(quote) if quote else None,
        expires_at=offer.expires_at,
        offer_token=offer.token,
    )


@router.get(
    "/upgrade-offers",
    response_model=OffersOut,
    responses=problem_responses(401, 403, 404, 422),
    description="Ranked offers (seat expansion, tier upsell, add-on, sales-assisted) with the "
    "reasons behind them, the exact quote and a signed offer token; an empty list when there is "
    "nothing to offer. Every offer returned is recorded as an impression.",
)
def get_upgrade_offers(
    account_id: AccountIdPath,
    session: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    signer: SignerDep,
    _: AccountAccessDep,
) -> OffersOut:
    account = get_account(session, account_id)
    result = upgrade_offers(session, catalog, account, clock.now(), signer)
    return OffersOut(
        account_id=result.account_id,
        in_activation_window=result.in_activation_window,
        offers=[offer_out(offer) for offer in result.offers],
    )


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
