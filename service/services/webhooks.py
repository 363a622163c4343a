"""Stripe webhooks: verified events into the inbox, each subscription synced onto its account."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from service.adapters.billing_repository import ScheduledChangeRepository, UpgradeRepository
from service.adapters.billing_tables import WebhookEventRow
from service.adapters.db import transaction
from service.adapters.ledger_appends import LedgerAppends
from service.adapters.orm import AccountRow
from service.adapters.repositories import AccountRepository
from service.adapters.stripe_api import (
    ACCOUNT_METADATA,
    InvalidWebhook,
    RemoteSubscription,
    StripeBilling,
    utc,
)
from service.adapters.webhook_inbox import (
    WebhookInbox,
    account_by_subscription,
    account_version_by_subscription,
)
from service.domain.accounts import AccountStatus, Plan, priced_target
from service.domain.catalog import Catalog
from service.domain.errors import Conflict, DomainError
from service.domain.ledger import PlanSnapshot, Source
from service.domain.money import Money
from service.domain.periods import Period
from service.ports import Clock
from service.services.account_state import mark_changed, plan_of, plan_snapshot, write_plan
from service.services.ledger import ledger_balances, record_movement
from service.services.test_clocks import CLOCK_EVENTS, clock_advanced, follow_subscription_clock
from service.services.upgrades import UpgradeInProgress, settle_upgrades

log = logging.getLogger("upshift.webhooks")

SOURCE = "stripe"
SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.pending_update_applied",
        "customer.subscription.pending_update_expired",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    }
)
# invoice.payment_action_required: a payment waits for the customer's authentication (3-D
# Secure); an upgrade waiting on it is settled when its invoice is paid (settle_upgrades).
INVOICE_EVENTS = frozenset(
    {"invoice.paid", "invoice.payment_failed", "invoice.payment_action_required"}
)
# A schedule that ends without applying its next phase (released or canceled in the Dashboard or
# the Customer Portal, or aborted) takes the end-of-term change Upshift scheduled with it.
SCHEDULE_END_EVENTS = frozenset(
    {
        "subscription_schedule.released",
        "subscription_schedule.canceled",
        "subscription_schedule.aborted",
    }
)
SYNCED_EVENTS = SUBSCRIPTION_EVENTS | INVOICE_EVENTS | SCHEDULE_END_EVENTS | CLOCK_EVENTS

# Stripe's subscription statuses in the account's words
# (docs.stripe.com/billing/subscriptions/overview#subscription-statuses).
STATUS_OF: Mapping[str, AccountStatus] = {
    "active": AccountStatus.active,
    "trialing": AccountStatus.trialing,
    "past_due": AccountStatus.past_due,
    "unpaid": AccountStatus.past_due,
    "canceled": AccountStatus.canceled,
    "incomplete_expired": AccountStatus.canceled,
    "incomplete": AccountStatus.incomplete,
    "paused": AccountStatus.paused,
}


class WebhookRejected(DomainError):
    code = "invalid_signature"
    title = "Webhook rejected"
    status = 400


class AccountMoved(Conflict):
    code = "account_moved"
    title = "Account changed while Stripe was read"


class UnmappableSubscription(Exception):
    """The subscription's items name no catalog tier: fix the catalog or Stripe, then retry."""


class Outcome(StrEnum):
    processed = "processed"  # the account was compared with Stripe (and updated if it differed)
    ignored = "ignored"  # not an event Upshift syncs, or no account is billed by it
    duplicate = "duplicate"  # handled before: a replay is a no-op
    pending_retry = "pending_retry"  # stored, but processing failed; retried later


@dataclass(frozen=True, slots=True)
class Receipt:
    status: Outcome
    event_id: str
    event_type: str
    account_id: str | None = None
    detail: str | None = None


def receive_stripe_event(
    session: Session,
    billing: StripeBilling | None,
    catalog: Catalog,
    now: datetime,
    payload: bytes,
    signature: str | None,
) -> Receipt:
    """Verify, store once, process inline (same transaction). Nothing is stored unless the
    signature is Stripe's and fresh; an event handled before is answered as a duplicate."""
    if billing is None:
        raise WebhookRejected(
            "Stripe webhooks need UPSHIFT_BILLING_BACKEND=stripe", code="webhook_not_configured"
        )
    try:
        event = billing.verify_event(payload, signature)
    except InvalidWebhook as exc:
        if exc.code == "unexpected_api_version":
            # Not a forgery but a misconfigured endpoint: the operator must see it (and the
            # refusal is counted in /metrics as upshift_problems{code="unexpected_api_version"}).
            log.error("Stripe event refused: %s", exc.detail)
        raise WebhookRejected(exc.detail, field=exc.field, code=exc.code) from None
    inbox = WebhookInbox(session)
    row = WebhookEventRow(
        source=SOURCE,
        external_id=event["id"][:255],
        type=event["type"][:100],
        payload=event,
        received_at=now,
        handled_at=None,
        error=None,
    )
    if not inbox.add(row):
        stored = inbox.get(SOURCE, row.external_id, for_update=True)
        assert stored is not None
        if stored.handled_at is not None:
            return Receipt(Outcome.duplicate, stored.external_id, stored.type)
        row = stored  # a redelivery of an event whose processing failed: try again
    return process_event(session, billing, catalog, row, now)


def process_event(
    session: Session, billing: StripeBilling, catalog: Catalog, row: WebhookEventRow, now: datetime
) -> Receipt:
    """Handle one stored event in a savepoint: on failure nothing but the error is kept."""
    try:
        with session.begin_nested():
            receipt = _handle(session, billing, catalog, row, now)
    except Exception as exc:  # recorded on the event, which stays unhandled for a retry
        log.warning("processing Stripe event %s failed", row.external_id, exc_info=True)
        detail = exc.detail if isinstance(exc, DomainError) else str(exc)
        row.error = f"{type(exc).__name__}: {detail}"[:1000]
        row.handled_at = None
        session.flush()
        return Receipt(Outcome.pending_retry, row.external_id, row.type, detail=row.error)
    row.handled_at = now
    row.error = None
    session.flush()
    return receipt


@dataclass(frozen=True, slots=True)
class BatchReport:
    processed: int
    ignored: int
    failed: int


def process_unhandled(
    factory: sessionmaker[Session],
    billing: StripeBilling,
    catalog: Catalog,
    clock: Clock,
    *,
    limit: int = 1000,
) -> BatchReport:
    """Re-run stored events that are not handled yet, oldest first, one transaction each."""
    with transaction(factory) as session:
        ids = WebhookInbox(session).unhandled_ids(SOURCE, limit)
    counts = {outcome: 0 for outcome in Outcome}
    for row_id in ids:
        with transaction(factory) as session:
            row = WebhookInbox(session).lock(row_id)
            if row is None or row.handled_at is not None:
                continue  # handled meanwhile by a redelivery
            counts[process_event(session, billing, catalog, row, clock.now()).status] += 1
    return BatchReport(
        counts[Outcome.processed], counts[Outcome.ignored], counts[Outcome.pending_retry]
    )


# --- syncing a subscription onto its account -----------------------------------------------


def _handle(
    session: Session, billing: StripeBilling, catalog: Catalog, row: WebhookEventRow, now: datetime
) -> Receipt:
    event = row.payload
    obj = event["data"]["object"]
    if row.type in CLOCK_EVENTS:
        moved = clock_advanced(session, obj, now)
        detail = f"accounts on the test clock: {', '.join(moved)}" if moved else "no account moved"
        return Receipt(Outcome.processed, row.external_id, row.type, detail=detail)
    subscription_id = _subscription_id(row.type, obj)
    if row.type not in SYNCED_EVENTS or subscription_id is None:
        return Receipt(Outcome.ignored, row.external_id, row.type, detail="not synced")
    # Stripe is asked before the account is locked (never while a row lock is held: a slow
    # Stripe would stall every writer of the account). The version read first tells whether a
    # writer changed the account meanwhile, in which case the snapshot may predate its change:
    # the event is left for Stripe's next delivery rather than synced from an old snapshot.
    seen = account_version_by_subscription(session, subscription_id)
    # Re-fetched rather than read from the event, so the order events arrive in does not matter.
    remote = billing.subscription(subscription_id)
    account = account_by_subscription(session, subscription_id) or _linked_by_metadata(
        session, subscription_id, obj
    )
    if account is None:
        detail = f"no account is billed by subscription {subscription_id}"
        return Receipt(Outcome.ignored, row.external_id, row.type, detail=detail)
    if seen is not None and seen != account.version:
        raise AccountMoved(
            f"account {account.id} changed while Stripe was read; retried on redelivery"
        )
    if UpgradeRepository(session).in_flight(account.id, now) is not None:
        raise UpgradeInProgress(
            f"an upgrade of account {account.id} is being applied; retried on redelivery"
        )
    invoice_id = obj.get("id") if row.type in INVOICE_EVENTS else None
    # An upgrade whose payment waited for the customer is applied (with its offer's
    # attribution and its one ledger entry) before the generic sync, whichever of Stripe's
    # events about it arrives first.
    settled = settle_upgrades(
        session,
        catalog,
        account,
        plan=remote.plan,
        pending_invoice=remote.latest_invoice if remote.has_pending_update else None,
        mrr=remote.mrr,
        now=now,
    )
    try:
        changed = sync_account(
            session,
            catalog,
            account,
            remote,
            idempotency_key=f"webhook:{SOURCE}:{row.external_id}",
            happened_at=utc(int(event.get("created") or 0)),
            now=now,
            invoice_id=invoice_id,
        )
    except UnmappableSubscription as exc:
        # A switch in the Customer Portal or the Dashboard to a price the catalog does not sell:
        # no retry can map it, so the event must not wait in the inbox forever. The account is
        # left as it is until the catalog (sync-stripe) or the subscription changes again.
        log.error("account %s left as it is: %s", account.id, exc)
        detail = f"{exc}; the account is left as it is"
        return Receipt(Outcome.ignored, row.external_id, row.type, account.id, detail)
    detail = "account updated" if changed or settled else "account already matches Stripe"
    if settled:
        detail += "; " + "; ".join(settled)
    if row.type in SCHEDULE_END_EVENTS and _drop_scheduled(session, account, obj["id"]):
        detail += "; the change scheduled with it is canceled"
    return Receipt(Outcome.processed, row.external_id, row.type, account.id, detail)


def _drop_scheduled(session: Session, account: AccountRow, schedule_id: object) -> bool:
    """Cancel the account's changes still waiting on a schedule that ended without them."""
    repository = ScheduledChangeRepository(session)
    waiting = [c for c in repository.pending(account.id) if c.external_id == schedule_id]
    for change in waiting:
        change.status = "canceled"
    if waiting:
        session.flush()
        mark_changed(session, account.id)
    return bool(waiting)


def _subscription_id(event_type: str, obj: Mapping[str, Any]) -> str | None:
    if event_type in SUBSCRIPTION_EVENTS:
        value = obj.get("id")
    elif event_type in SCHEDULE_END_EVENTS:
        # A released schedule no longer names its subscription, but keeps it here.
        value = obj.get("subscription") or obj.get("released_subscription")
    else:
        parent = obj.get("parent") or {}
        value = (parent.get("subscription_details") or {}).get("subscription")
    return value if isinstance(value, str) and value else None


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(obj.get("metadata"), dict) and obj.get("object") == "subscription":
        return obj["metadata"]
    details = (obj.get("parent") or {}).get("subscription_details") or {}
    return details.get("metadata") or {}


def _linked_by_metadata(
    session: Session, subscription_id: str, obj: Mapping[str, Any]
) -> AccountRow | None:
    """A subscription created outside Upshift names its account in metadata; it is linked
    unless that account is already billed by another live subscription."""
    account_id = _metadata(obj).get(ACCOUNT_METADATA)
    if not isinstance(account_id, str) or not account_id:
        return None
    account = AccountRepository(session).get(account_id, for_update=True)
    if account is None:
        return None
    if account.billing_subscription_id not in (None, subscription_id) and (
        account.status != AccountStatus.canceled
    ):
        log.warning(
            "subscription %s names account %s, which is billed by %s; not linked",
            subscription_id,
            account_id,
            account.billing_subscription_id,
        )
        return None
    return account


def sync_account(
    session: Session,
    catalog: Catalog,
    account: AccountRow,
    remote: RemoteSubscription,
    *,
    idempotency_key: str,
    happened_at: datetime,
    now: datetime,
    invoice_id: str | None = None,
) -> bool:
    """Bring the account to the subscription's plan, status and period; True if it moved.

    Any move of MRR is one ledger movement with source `webhook`: churn on cancellation, a
    contraction for a downgrade that took effect, and so on. A change Upshift applied itself
    is already on the account (and in the ledger), so its webhooks find nothing to do.
    """
    status = STATUS_OF.get(remote.status)
    if status is None:
        log.info("subscription %s is %s: not synced", remote.id, remote.status)
        return False
    plan = remote.plan
    if plan is None:
        raise UnmappableSubscription(
            f"subscription {remote.id} has no single base item with a catalog price"
        )
    # Stripe's prices name the version when they differ between versions; prices shared by
    # several versions leave the account on its own (or, for a new tier, the one in force).
    plan = priced_target(catalog, plan_of(account), plan)
    paying = status in (AccountStatus.active, AccountStatus.past_due)  # as account_mrr counts
    mrr_after = remote.mrr if paying else Money.zero(remote.currency)
    clock_moved = follow_subscription_clock(account, remote)
    unchanged = _state(account) == (
        plan,
        status,
        remote.period,
        remote.customer_id,
        remote.id,
        remote.currency,
    )
    if unchanged and ledger_balances(session, account.id) == _balances(mrr_after):
        if clock_moved:
            account.updated_at = now
            session.flush()
            mark_changed(session, account.id)
        return clock_moved
    before = plan_snapshot(account)
    write_plan(account, plan)
    account.status = status.value
    account.current_period_start = remote.period.start
    account.current_period_end = remote.period.end
    account.billing_customer_id = remote.customer_id
    account.billing_subscription_id = remote.id
    # The account is billed in the subscription's currency, whatever the catalog's is.
    account.currency = remote.currency
    account.updated_at = now
    session.flush()
    mark_changed(session, account.id)
    _settle_scheduled(session, account.id, plan)
    _record(
        session, catalog, account, before, mrr_after, idempotency_key, happened_at, now, invoice_id
    )
    return True


def _state(account: AccountRow) -> tuple[Plan, str, Period, str | None, str | None, str]:
    return (
        plan_of(account),
        account.status,
        Period(account.current_period_start, account.current_period_end),
        account.billing_customer_id,
        account.billing_subscription_id,
        account.currency,
    )


def _balances(mrr: Money) -> dict[str, int]:
    """The ledger balances (currencies at 0 left out) of an account whose MRR is `mrr`."""
    return {mrr.currency: mrr.minor} if mrr.minor else {}


def _settle_scheduled(session: Session, account_id: str, plan: Plan) -> None:
    """A scheduled change Stripe has now applied is no longer pending."""
    for change in ScheduledChangeRepository(session).pending(account_id):
        target = change.target
        if (
            target.get("tier") == plan.tier
            and target.get("interval") == plan.interval.value
            and target.get("seats") == plan.seats
            and dict(target.get("addons") or {}) == plan.addons
        ):
            change.status = "applied"
    session.flush()


def _record(
    session: Session,
    catalog: Catalog,
    account: AccountRow,
    before: PlanSnapshot,
    mrr_after: Money,
    idempotency_key: str,
    happened_at: datetime,
    now: datetime,
    invoice_id: str | None,
) -> None:
    """The ledger brought to `mrr_after`, in the subscription's currency: what the customer
    pays a month after forever discounts (see stripe_api.subscription_mrr). A balance the
    account still has in another currency (it was billed in that one before) moves to 0."""
    appends = LedgerAppends(session)
    # Taken before the balance is read, so no other appender moves it in between.
    appends.lock()
    balances = ledger_balances(session, account.id)
    currencies = sorted({mrr_after.currency, *balances})
    positions = appends.positions([(account.id, currency) for currency in currencies])
    # Dated when Stripe says it happened, but never before the account's last movement (the
    # ledger is ordered) nor after now (a fake or skewed Stripe clock).
    occurred_at = min(happened_at, now)
    for currency in currencies:
        last = positions[(account.id, currency)].last_occurred_at
        if last is not None and occurred_at < last:
            occurred_at = last
    for currency in currencies:
        record_movement(
            session,
            account_id=account.id,
            currency=currency,
            mrr_before=balances.get(currency, 0),
            mrr_after=mrr_after.minor if currency == mrr_after.currency else 0,
            before=before,
            after=plan_snapshot(account),
            source=Source.WEBHOOK,
            idempotency_key=(
                idempotency_key
                if currency == mrr_after.currency
                else f"{idempotency_key}:{currency}"
            ),
            occurred_at=occurred_at,
            catalog_version=account.catalog_version,
            stripe_invoice_id=invoice_id,
            stripe_subscription_id=account.billing_subscription_id,
        )
