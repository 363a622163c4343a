"""Account state: create or replace an account's plan, validated against the active catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from service.adapters.billing_local import LocalBillingGateway
from service.adapters.billing_repository import ScheduledChangeRepository
from service.adapters.orm import AccountRow
from service.adapters.repositories import AccountRepository
from service.domain.accounts import (
    AccountStatus,
    Plan,
    plan_lines,
    priced_target,
    validate_plan,
)
from service.domain.catalog import Catalog, Interval, UnknownCatalogVersion
from service.domain.errors import Conflict, NotFound, ValidationFailed
from service.domain.ledger import Source
from service.domain.periods import Period, add_months
from service.domain.quotes import billed_nothing, current_billed
from service.ports import BillingGateway, Clock
from service.services.account_state import (
    account_mrr,
    mark_changed,
    plan_of,
    plan_snapshot,
    write_plan,
)
from service.services.billing import store_billed
from service.services.ledger import record_account_state
from service.services.signals import evaluate_account

# An account as the use cases hand it out (its row; read-only to their callers).
Account = AccountRow

# A new account under local billing is invoiced for its first period at once (for 0 when trialing).
_INVOICED_AT_START = (AccountStatus.active, AccountStatus.trialing)


@dataclass(frozen=True, slots=True)
class AccountInput:
    tier: str
    interval: Interval
    seats: int
    addons: dict[str, int] = field(default_factory=dict)
    name: str | None = None
    currency: str | None = None
    catalog_version: str | None = None
    status: AccountStatus = AccountStatus.active
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    billing_customer_id: str | None = None
    billing_subscription_id: str | None = None


def get_account(session: Session, account_id: str, *, for_update: bool = False) -> AccountRow:
    """The account (404 if unknown); `for_update` locks its row until the transaction ends."""
    row = AccountRepository(session).get(account_id, for_update=for_update)
    if row is None:
        raise unknown_account(account_id)
    return row


def known_version(catalog: Catalog, version: str | None) -> str:
    """`version` when the catalog has it ("" when none is named); 422 naming the field if not."""
    if not version:
        return ""
    try:
        return catalog.at_version(version).version
    except UnknownCatalogVersion:
        raise ValidationFailed(
            f"unknown catalog version '{version}' (published: {', '.join(catalog.history.names)})",
            field="catalog_version",
            code="unknown_catalog_version",
        ) from None


def unknown_account(account_id: str) -> NotFound:
    return NotFound(f"account '{account_id}' not found", code="account_not_found")


def put_account(
    session: Session,
    catalog: Catalog,
    clock: Clock,
    account_id: str,
    data: AccountInput,
    *,
    expected_version: int | None = None,
    gateway: BillingGateway | None = None,
) -> tuple[AccountRow, bool]:
    """Create or replace the account; returns the row and whether it was created.

    With local billing (`gateway`), creating an active account invoices its first period in
    full, as Stripe invoices a new subscription at once; later prorations credit what that
    invoice charged. A trialing account is invoiced nothing until its trial ends (a renewal).
    A later PUT states the plan as billed: it is the admin's correction, not a sale.
    """
    plan = Plan(
        tier=data.tier,
        interval=data.interval,
        seats=data.seats,
        addons=data.addons,
        version=known_version(catalog, data.catalog_version),
    )
    if data.currency is not None and data.currency != catalog.currency:
        raise ValidationFailed(
            f"the catalog sells in {catalog.currency}, not {data.currency}",
            field="currency",
            code="currency_mismatch",
        )
    now = clock.now()
    # Whole seconds, as Stripe counts: a period starting mid-second would put "now, floored to
    # the second" before its own start during that first second.
    period_start = (data.current_period_start or now).replace(microsecond=0)
    period_end = (
        data.current_period_end or add_months(period_start, plan.interval.months)
    ).replace(microsecond=0)
    if period_end <= period_start:
        raise ValidationFailed(
            "current_period_end must be after current_period_start", field="current_period_end"
        )
    if period_end <= now:
        # A period already over would be renewed at its end, before this PUT's own movement:
        # the ledger cannot go back in time, so the account would be stuck.
        raise ValidationFailed(
            "current_period_end has passed; give the account's current period",
            field="current_period_end",
            code="period_ended",
        )
    repository = AccountRepository(session)
    row = repository.get(account_id, for_update=True)
    if row is None and expected_version is not None:
        raise NotFound(f"account '{account_id}' not found", code="account_not_found")
    if row is not None and expected_version is not None and row.version != expected_version:
        raise Conflict(
            f"account '{account_id}' is at version {row.version}, not {expected_version}",
            code="state_changed",
        )
    created = row is None
    mark_changed(session, account_id)
    if not created:
        # The PUT states the plan: a change still waiting for the period end was made against
        # the old one and must not undo the new one at renewal.
        ScheduledChangeRepository(session).cancel_pending(account_id)
    before = None if row is None else plan_snapshot(row)
    # A new account buys the version in force; a PUT keeps the account's version on the same
    # tier (grandfathered) and gives a new tier today's; `catalog_version` states another.
    if row is None:
        plan = plan.at_version(plan.version or catalog.version)
    else:
        plan = priced_target(catalog, plan_of(row), plan)
    validate_plan(catalog, plan)
    if row is None:
        version = plan.version
        row = AccountRow(
            id=account_id, created_at=now, catalog_version=version, limits_version=version
        )
    row.name = data.name
    write_plan(row, plan)
    row.currency = catalog.currency
    row.status = data.status.value
    row.current_period_start = period_start
    row.current_period_end = period_end
    row.billing_cycle_anchor = period_start
    row.billing_customer_id = data.billing_customer_id
    if row.billing_subscription_id != data.billing_subscription_id:
        # Another subscription's test clock is learnt from Stripe (webhooks.sync_account).
        row.billing_test_clock_id = row.billing_frozen_time = None
    row.billing_subscription_id = data.billing_subscription_id
    row.updated_at = now
    if created:
        repository.add(row)
    else:
        session.flush()
    if created and isinstance(gateway, LocalBillingGateway) and row.status in _INVOICED_AT_START:
        # As Stripe does for a new subscription: an invoice at once, for 0 during a free trial
        # (docs.stripe.com/billing/subscriptions/trials).
        period = Period(period_start, period_end)
        trial = row.status == AccountStatus.trialing
        gateway.invoice_period(
            account_id,
            row.currency,
            plan_lines(catalog, plan),
            period,
            billing_reason="subscription_create",
            free=trial,
        )
        billed = current_billed(catalog, plan, period)
        store_billed(
            session, catalog, account_id, plan, billed_nothing(billed) if trial else billed
        )
    # Every PUT that moves MRR is one admin movement, keyed by the version it produced, so the
    # ledger's sum for the account stays equal to its MRR.
    record_account_state(
        session,
        account_id=account_id,
        currency=row.currency,
        mrr_after=account_mrr(catalog, row).minor,
        before=before,
        after=plan_snapshot(row),
        source=Source.ADMIN,
        idempotency_key=f"admin:put:{account_id}:{row.version}",
        occurred_at=now,
        catalog_version=row.catalog_version,
    )
    # The plan sets the limits: record the thresholds the account's usage crosses under it.
    evaluate_account(session, catalog, row, now)
    return row, created
