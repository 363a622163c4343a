"""Protocols the use cases need from the outside world; adapters implement them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from service.domain.accounts import Plan
from service.domain.money import Money
from service.domain.periods import Period
from service.domain.proration import BilledLine, ProrationLine
from service.domain.quotes import Quote


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, UTC and timezone-aware."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class FixedClock:
    """A clock stopped at one instant: `UPSHIFT_NOW` (tests, replays of a past day)."""

    instant: datetime

    def now(self) -> datetime:
        return self.instant


def clock_at(now: datetime | None) -> Clock:
    """The service's clock: stopped at `now` when it is set (`Settings.now`), else the system's."""
    return SystemClock() if now is None else FixedClock(now)


@dataclass(frozen=True, slots=True)
class BillingAccount:
    """What a billing provider needs to know about an account to change its subscription."""

    account_id: str
    currency: str
    plan: Plan
    period: Period
    customer_id: str | None
    subscription_id: str | None


@dataclass(frozen=True, slots=True)
class Preview:
    """The provider's own price of a change (Stripe: invoices.create_preview)."""

    lines: tuple[ProrationLine, ...]
    amount_due: Money
    # Stripe's invoice before tax (after its discounts) and its tax; amount_due is what is left
    # after the customer's credit balance. None where the provider has no such notion.
    total_excluding_tax: Money | None = None
    tax: Money | None = None


@dataclass(frozen=True, slots=True)
class PaymentAction:
    """A payment that waits for the customer (3-D Secure, strong customer authentication): the
    change is applied by the provider once its invoice is paid, and is dropped at `expires_at`."""

    invoice_id: str
    hosted_url: str | None  # where the customer completes the payment
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class PaymentState:
    """Where the provider stands on an account's subscription: its plan (None where it maps to
    no catalog plan) and the invoice a pending change waits on (None: nothing pending)."""

    plan: Plan | None
    pending_invoice: str | None
    mrr: Money | None = None  # what it bills a month, where the provider says (Stripe)


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """A change the provider has applied and charged; or, with `action`, one it will apply once
    the customer completes the payment (nothing is charged or changed until then)."""

    invoice_id: str | None
    amount_charged: Money
    subscription_id: str | None
    customer_id: str | None
    period: Period
    billed: tuple[BilledLine, ...]
    action: PaymentAction | None = None
    # The subscription's MRR as the provider bills it (Stripe: after forever discounts); None
    # means the catalog's list price is what it bills.
    mrr: Money | None = None


@dataclass(frozen=True, slots=True)
class ScheduledChange:
    schedule_id: str | None
    effective_at: datetime


class BillingGateway(Protocol):
    """Where subscriptions live: our own database (local) or Stripe.

    `apply` raises domain PaymentDeclined when the payment fails (the subscription is left
    unchanged) and BillingUnavailable when the provider cannot be reached; with the same
    `idempotency_key` a retry never applies a change twice.
    """

    name: str
    # Whether the provider is reached over the network: its calls are then made outside any
    # transaction, never while the account's row is locked (services/upgrades.py).
    remote: bool

    def preview(self, account: BillingAccount, quote: Quote) -> Preview: ...

    def apply(
        self, account: BillingAccount, quote: Quote, idempotency_key: str
    ) -> AppliedChange: ...

    def schedule(
        self, account: BillingAccount, quote: Quote, idempotency_key: str
    ) -> ScheduledChange: ...

    def payment_state(self, account: BillingAccount) -> PaymentState:
        """The provider's plan for the account and the invoice a pending change waits on."""
        ...
