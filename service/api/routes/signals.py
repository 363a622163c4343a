"""Signals: an account's threshold crossings, expansion readiness and sales motion (admin)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import AdminDep, CatalogDep, ClockDep, SessionDep
from service.api.problems import problem_responses
from service.api.routes.accounts import AccountIdPath
from service.api.usage_schemas import ActivationOut, CrossingOut, SignalsOut
from service.domain.thresholds import Motion
from service.services.accounts import get_account
from service.services.signals import signal_summary

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
