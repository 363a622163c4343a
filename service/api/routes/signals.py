"""Signals: an account's threshold crossings, expansion readiness and sales motion (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from service.api.deps import AdminDep, CatalogDep, ClockDep, ProductAccessDep, SessionDep
from service.api.problems import problem_responses
from service.api.routes.accounts import AccountIdPath
from service.api.usage_schemas import (
    ActivationOut,
    CrossingOut,
    SalesRequestIn,
    SalesRequestOut,
    SignalsOut,
)
from service.domain.thresholds import Motion
from service.services.accounts import get_account
from service.services.signals import request_sales_contact, signal_summary

router = APIRouter(prefix="/v1", tags=["signals"])


@router.get(
    "/accounts/{account_id}/signals",
    response_model=SignalsOut,
    responses=problem_responses(401, 403, 404, 422),
)
def account_signals(
    account_id: AccountIdPath,
    session: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    _: AdminDep,
) -> SignalsOut:
    """Crossings (most recent first), the readiness score with its reason codes, the
    post-activation window, and who should act: self_serve, cs_assisted or sales_assisted."""
    summary = signal_summary(session, catalog, get_account(session, account_id), clock.now())
    rules = catalog.signals
    return SignalsOut(
        account_id=account_id,
        score=summary.score,
        reasons=list(summary.reasons),
        motion=Motion(summary.motion),
        activation=ActivationOut(
            milestone=rules.activation_milestone,
            activated_at=summary.activated_at,
            days_since_activation=summary.days_since_activation,
            window_days=rules.post_activation_window_days,
            in_window=summary.in_window,
        ),
        crossings=[CrossingOut.of(c) for c in summary.crossings],
    )


@router.post(
    "/accounts/{account_id}/sales-requests",
    response_model=SalesRequestOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": SalesRequestOut, "description": "Already asked in this billing period"},
        **problem_responses(401, 403, 404, 409, 422),
    },
)
def create_sales_request(
    account_id: AccountIdPath,
    body: SalesRequestIn,
    response: Response,
    session: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    _: ProductAccessDep,
) -> SalesRequestOut:
    """The customer asked to talk to sales about a tier (the pricing table's "Talk to sales"):
    a signal for the sales team, in the account's signals and delivered through the signal
    outbox as `upshift.sales_requested`. Once per account, tier and billing period: asking again
    (a retry or a second click) answers 200 with the first request, so it needs no
    Idempotency-Key. With the account's session token or an ingest key."""
    account = get_account(session, account_id)
    request, created = request_sales_contact(session, catalog, account, body.tier, clock.now())
    if not created:
        response.status_code = status.HTTP_200_OK
    return SalesRequestOut.of(request)
