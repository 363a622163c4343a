"""Every plan an account could be on, priced for it now: what a pricing table shows."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from service.api.deps import (
    AccountAccessDep,
    AccountIdPath,
    CatalogDep,
    ClockDep,
    SessionDep,
    renew_first,
)
from service.api.offer_schemas import PlanOut, QuoteOut, quote_out
from service.api.problems import problem_responses
from service.api.schemas import MoneyOut
from service.domain.accounts import Plan
from service.domain.catalog import Interval
from service.domain.money import Money
from service.services.account_state import state_of
from service.services.accounts import get_account
from service.services.billing import billed_lines
from service.services.plan_options import OptionAction, PlanOption, plan_options

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["offers"])


class PlanOptionOut(BaseModel):
    tier: str
    interval: Interval
    action: OptionAction = Field(
        description="current: the account's plan; upgrade: self-serve now, quote.amount_due_now "
        "due today; downgrade: scheduled for the end of the term; contact_sales: a "
        "sales-assisted tier above the account's; unavailable: no path from the account's plan"
    )
    target: PlanOut | None = Field(description="The plan the account would have; null: sales")
    recurring: MoneyOut | None = Field(description="Billed every interval on the target plan")
    quote: QuoteOut | None = Field(
        description="For upgrade and downgrade: the exact quote. Confirm with POST .../upgrades "
        "{target, expected_amount_due_minor}: a moved amount is a 409, never a different charge"
    )
    reason: str | None = Field(description="Why the option is unavailable")


class PlanOptionsOut(BaseModel):
    account_id: str
    current: PlanOut
    status: str
    catalog_version: str
    options: list[PlanOptionOut] = Field(
        description="Every tier by rank, at every interval it is sold in"
    )


def _plan(plan: Plan) -> PlanOut:
    return PlanOut(
        tier=plan.tier, interval=plan.interval, seats=plan.seats, addons=dict(plan.addons)
    )


def _money(amount: Money) -> MoneyOut:
    return MoneyOut(amount_minor=amount.minor, currency=amount.currency)


def _option(option: PlanOption) -> PlanOptionOut:
    return PlanOptionOut(
        tier=option.tier,
        interval=option.interval,
        action=option.action,
        target=_plan(option.target) if option.target else None,
        recurring=_money(option.recurring) if option.recurring else None,
        quote=quote_out(option.quote) if option.quote else None,
        reason=option.reason,
    )


@router.get(
    "/plan-options",
    response_model=PlanOptionsOut,
    responses=problem_responses(401, 403, 404, 422),
    description="Every tier of the catalog at every interval, for this account: its current "
    "plan, the exact amount due today for each self-serve upgrade (priced by the local "
    "Stripe-exact engine, as offers are), scheduled downgrades, and the sales-assisted tiers. "
    "What <upshift-pricing-table> shows; with the account's session token or an admin key.",
)
def get_plan_options(
    account_id: AccountIdPath,
    request: Request,
    session: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    _: AccountAccessDep,
) -> PlanOptionsOut:
    now = clock.now()
    renew_first(request.app.state, account_id, now)
    account = state_of(get_account(session, account_id))
    options = plan_options(catalog, account, billed_lines(session, catalog, account), now)
    return PlanOptionsOut(
        account_id=account_id,
        current=_plan(account.plan),
        status=account.status.value,
        catalog_version=catalog.version,
        options=[_option(option) for option in options],
    )
