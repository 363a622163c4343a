"""Data model of the fake Stripe server: entities, errors, fault registry.

Entities are plain dataclasses holding the *internal* truth (including what
Stripe keeps hidden, e.g. what each subscription item has actually been billed
for); :mod:`tests.fakes.stripe_state` renders them in the public API shape.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "Customer",
    "Event",
    "Fault",
    "Faults",
    "IdGenerator",
    "Invoice",
    "Line",
    "PendingUpdate",
    "Phase",
    "PhaseItem",
    "Price",
    "Product",
    "Schedule",
    "StripeError",
    "SubItem",
    "Subscription",
    "TestClock",
]

Json = dict[str, Any]


class StripeError(Exception):
    """An API error rendered as Stripe's ``{"error": {...}}`` body with an HTTP status."""

    def __init__(self, status: int, error: Json, keep_state: bool = False) -> None:
        super().__init__(error.get("message", ""))
        self.status = status
        self.error = error
        self.keep_state = keep_state  # False: the request is rolled back (Stripe is atomic)

    def body(self) -> Json:
        return {"error": dict(self.error)}

    @classmethod
    def invalid(
        cls, message: str, param: str | None = None, code: str | None = None
    ) -> StripeError:
        error: Json = {"type": "invalid_request_error", "message": message}
        if param is not None:
            error["param"] = param
        if code is not None:
            error["code"] = code
        return cls(400, error)

    @classmethod
    def missing(cls, kind: str, object_id: str, param: str = "id") -> StripeError:
        """Unknown id: 404 for the path's resource, 400 for an id inside the parameters."""
        status = 404 if param == "id" else 400
        return cls(
            status,
            {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": param,
                "message": f"No such {kind}: '{object_id}'",
                "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
            },
        )

    @classmethod
    def unsupported(cls, param: str) -> StripeError:
        """A parameter real Stripe accepts but this fake does not model (never silently ignored)."""
        return cls.invalid(
            f"The fake Stripe server does not support the parameter `{param}` "
            "(it is valid for Stripe; extend tests/fakes if the app needs it).",
            param=param,
            code="fake_unsupported_parameter",
        )

    @classmethod
    def card_declined(cls, keep_state: bool = False) -> StripeError:
        return cls(
            402,
            {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            },
            keep_state,
        )

    @classmethod
    def requires_action(cls, keep_state: bool = False) -> StripeError:
        """A payment that needs the customer's authentication, asked for where no pending state
        can hold it (``error_if_incomplete``, ``invoices.pay``): the error code
        ``invoice_payment_intent_requires_action`` of docs.stripe.com/error-codes."""
        return cls(
            402,
            {
                "type": "card_error",
                "code": "invoice_payment_intent_requires_action",
                "message": "This payment requires additional user action before it can be "
                "completed successfully.",
                "doc_url": "https://stripe.com/docs/error-codes/"
                "invoice-payment-intent-requires-action",
            },
            keep_state,
        )


class IdGenerator:
    """Deterministic Stripe-looking ids (``sub_1Fk...``); restarts on :meth:`reset`."""

    def __init__(self) -> None:
        self._counter = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._counter = 0

    def new(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            n = self._counter
        digest = hashlib.sha256(f"{prefix}:{n}".encode()).digest()
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        tail = "".join(alphabet[b % 62] for b in digest[:14])
        return f"{prefix}_1{tail}"


@dataclass
class Customer:
    id: str
    created: int
    email: str | None = None
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    balance: int = 0
    default_payment_method: str | None = None
    # Pays with a card that "requires authentication on all transactions, regardless of how the
    # card is set up" (Stripe's test card 4000 0027 6000 3184, docs.stripe.com/testing#regulatory-
    # cards): every payment attempt needs the customer's 3-D Secure step (FakeStripe.
    # require_authentication).
    requires_authentication: bool = False
    # "ID of the test clock to attach to the customer" (CustomerCreateParams.test_clock): its
    # subscriptions and invoices live on that clock's time, not the account's.
    test_clock: str | None = None


@dataclass
class TestClock:
    """A test clock (docs.stripe.com/api/test_clocks/object): the frozen time of the objects
    that belong to it (its customers, their subscriptions, invoices and schedules)."""

    __test__ = False  # not a pytest test class

    id: str
    created: int  # the account's time, not the clock's (the API reference's example)
    frozen_time: int
    name: str | None = None
    status: str = "ready"  # "advancing" | "internal_failure" | "ready"
    advancing_to: int | None = None  # status_details.advancing.target_frozen_time


@dataclass
class Product:
    id: str
    created: int
    updated: int
    name: str
    active: bool = True
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    default_price: str | None = None


@dataclass
class Price:
    id: str
    created: int
    product: str
    currency: str
    unit_amount: int
    interval: str | None  # None for one_time prices
    interval_count: int = 1
    active: bool = True
    lookup_key: str | None = None
    nickname: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    tax_behavior: str = "unspecified"


@dataclass
class Line:
    """An invoice line; while ``invoice`` is None it is a pending invoice item."""

    id: str
    amount: int
    currency: str
    description: str
    period_start: int
    period_end: int
    price: str
    product: str
    quantity: int
    proration: bool
    subscription: str | None
    subscription_item: str | None
    invoice_item: str | None = None
    invoice: str | None = None
    # The subscription discounts behind the line (ids): a proration's amount already has them
    # taken off ("included"); a full line is discounted at the invoice (``discount_amounts``).
    discounts: list[str] = field(default_factory=list)
    discount_amounts: list[tuple[str, int]] = field(default_factory=list)  # (discount id, amount)
    taxes: list[tuple[str, int, int]] = field(default_factory=list)  # (rate id, tax, taxable)


@dataclass
class Invoice:
    id: str
    created: int
    customer: str
    currency: str
    subscription: str | None
    billing_reason: str
    lines: list[Line]
    period_start: int
    period_end: int
    starting_balance: int
    ending_balance: int | None
    amount_due: int
    status: str = "draft"  # draft | open | paid | void
    amount_paid: int = 0
    attempt_count: int = 0
    attempted: bool = False
    number: str | None = None
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    proration_date: int | None = None
    subscription_metadata: dict[str, str] | None = None
    preview: bool = False
    payment_intent: str | None = None  # made when a finalized invoice has an amount due
    discounts: list[str] = field(default_factory=list)  # the subscription's, when issued

    @property
    def subtotal(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def total_discount_amounts(self) -> list[tuple[str, int]]:
        """Per discount, what it took off the invoice's discountable lines (prorations carry
        theirs in their amount, so they add nothing here)."""
        totals: dict[str, int] = {}
        for line in self.lines:
            for discount_id, amount in line.discount_amounts:
                totals[discount_id] = totals.get(discount_id, 0) + amount
        return [(discount_id, amount) for discount_id, amount in totals.items() if amount]

    @property
    def total_taxes(self) -> list[tuple[str, int, int]]:
        """Per tax rate: (rate id, tax, taxable amount), summed over the lines."""
        totals: dict[str, tuple[int, int]] = {}
        for line in self.lines:
            for rate_id, tax, taxable in line.taxes:
                old_tax, old_taxable = totals.get(rate_id, (0, 0))
                totals[rate_id] = (old_tax + tax, old_taxable + taxable)
        return [(rate_id, tax, taxable) for rate_id, (tax, taxable) in totals.items()]

    @property
    def total_excluding_tax(self) -> int:
        return self.subtotal - sum(amount for _, amount in self.total_discount_amounts)

    @property
    def total(self) -> int:
        return self.total_excluding_tax + sum(tax for _, tax, _ in self.total_taxes)


@dataclass
class SubItem:
    id: str
    created: int
    price: str
    quantity: int
    metadata: dict[str, str] = field(default_factory=dict)
    # What the customer has actually been billed for this item in the current period:
    # `billed_amount` covers [billed_from, period_end).
    billed_amount: int = 0
    billed_from: int = 0
    billed_price: str = ""
    billed_quantity: int = 0


@dataclass
class PendingUpdate:
    expires_at: int
    invoice: str
    items: list[SubItem]  # the complete item list to apply
    changed_items: list[str]  # ids of items that differ from the current ones
    period: tuple[int, int, int, int] | None  # (anchor, k, start, end) when the interval changes
    interval: tuple[str, int]
    swept_pending: list[Line]  # earlier pending invoice items pulled into the invoice
    metadata: dict[str, str] | None = None  # merged into the subscription's when applied


@dataclass
class Subscription:
    id: str
    created: int
    customer: str
    currency: str
    items: list[SubItem]
    interval: str
    interval_count: int
    anchor: int
    period_k: int  # period_end == boundary(anchor, interval, interval_count, period_k)
    period_start: int
    period_end: int
    basis_start: int  # start of the full-length period the current one prorates against
    status: str = "active"
    metadata: dict[str, str] = field(default_factory=dict)
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    ended_at: int | None = None
    latest_invoice: str | None = None
    schedule: str | None = None
    default_payment_method: str | None = None
    description: str | None = None
    cancellation_details: Json = field(
        default_factory=lambda: {"comment": None, "feedback": None, "reason": None}
    )
    pending_update: PendingUpdate | None = None
    pending_items: list[Line] = field(default_factory=list)
    discounts: list[str] = field(default_factory=list)  # Discount ids, in the order applied
    default_tax_rates: list[str] = field(default_factory=list)  # TaxRate ids


@dataclass
class Coupon:
    """docs.stripe.com/api/coupons/object: `percent_off`, or `amount_off` in `currency`;
    `duration` forever, once or repeating (`duration_in_months`)."""

    id: str
    created: int
    duration: str
    percent_off: Decimal | None = None
    amount_off: int | None = None
    currency: str | None = None
    duration_in_months: int | None = None
    name: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    times_redeemed: int = 0


@dataclass
class Discount:
    """docs.stripe.com/api/discounts/object: a coupon applied to a subscription; `end` is set
    for a repeating coupon only ("If the coupon has a duration of `repeating`, the date that
    this discount will end")."""

    id: str
    coupon: str
    customer: str
    subscription: str
    start: int
    end: int | None


@dataclass
class TaxRate:
    """docs.stripe.com/api/tax_rates/object: a percentage, exclusive (added to the amount)."""

    id: str
    created: int
    display_name: str
    percentage: Decimal
    inclusive: bool = False
    active: bool = True
    country: str | None = None
    jurisdiction: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class PhaseItem:
    price: str
    quantity: int
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Phase:
    start_date: int
    end_date: int
    items: list[PhaseItem]
    currency: str
    proration_behavior: str = "create_prorations"
    metadata: dict[str, str] = field(default_factory=dict)
    # As given (coupon / discount / promotion_code ids, not checked), and not applied to the
    # subscription when the phase starts (see tests/fakes/README.md)
    discounts: list[dict[str, str]] = field(default_factory=list)
    automatic_tax: dict[str, Any] | None = None  # {"enabled": ..., "liability": ...}


@dataclass
class Schedule:
    id: str
    created: int
    customer: str
    subscription: str | None
    phases: list[Phase]
    current: int = 0
    end_behavior: str = "release"
    status: str = "active"
    metadata: dict[str, str] = field(default_factory=dict)
    released_at: int | None = None
    released_subscription: str | None = None
    canceled_at: int | None = None
    completed_at: int | None = None


@dataclass
class Event:
    id: str
    type: str
    created: int
    data: Json
    request_id: str | None
    idempotency_key: str | None

    def render(self, api_version: str) -> Json:
        return {
            "id": self.id,
            "object": "event",
            "api_version": api_version,
            "created": self.created,
            "data": self.data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": self.request_id, "idempotency_key": self.idempotency_key},
            "type": self.type,
        }


@dataclass
class Fault:
    target: str
    mode: str
    remaining: int = 1
    hang_seconds: float = 0.0


class Faults:
    """Armed faults, consumed by the first matching request (or payment attempt)."""

    REQUEST_MODES = frozenset(
        {"timeout_after_apply", "5xx_before_apply", "503_before_apply", "429_rate_limited"}
    )
    PAYMENT_MODES = frozenset({"card_declined"})

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        if fault.mode not in self.REQUEST_MODES | self.PAYMENT_MODES:
            raise ValueError(f"unknown fault mode {fault.mode!r}")
        if fault.remaining < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [Fault(f.target, f.mode, f.remaining, f.hang_seconds) for f in self._faults]

    def take(self, modes: frozenset[str], haystacks: list[str]) -> Fault | None:
        """Consume one use of the first armed fault whose mode and target match."""
        with self._lock:
            for fault in self._faults:
                if fault.mode not in modes:
                    continue
                if fault.target == "*" or any(
                    fault.target == h or fault.target in h for h in haystacks if h
                ):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None


@dataclass
class PaymentIntent:
    """The PaymentIntent "that Stripe creates during invoice finalization" (the SDK's
    Invoice.confirmation_secret docstring), one per invoice with an amount due.

    status: ``requires_payment_method`` (not attempted yet, or declined: ``last_payment_error``),
    ``requires_action`` (the customer must authenticate: 3-D Secure), ``succeeded`` or
    ``canceled`` (its invoice voided); docs.stripe.com/payments/paymentintents/lifecycle.
    """

    id: str
    created: int
    amount: int
    currency: str
    customer: str
    invoice: str
    client_secret: str
    status: str = "requires_payment_method"
    last_payment_error: dict[str, str] | None = None
    canceled_at: int | None = None
