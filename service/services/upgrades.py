"""One-click upgrades: verify the offer, re-quote, charge once, update the account and ledger."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from service.adapters.billing_repository import ScheduledChangeRepository, UpgradeRepository
from service.adapters.billing_tables import ScheduledChangeRow, UpgradeRow
from service.adapters.orm import AccountRow
from service.adapters.repositories import AccountRepository
from service.domain.accounts import Plan, plan_from_json, plan_to_json
from service.domain.catalog import Catalog, Timing
from service.domain.errors import Conflict, ValidationFailed
from service.domain.ledger import Attribution, Motion, Source
from service.domain.money import Money
from service.domain.periods import Period
from service.domain.proration import BilledLine
from service.domain.quotes import Quote
from service.ports import AppliedChange, BillingGateway, ScheduledChange
from service.services.account_state import (
    AccountState,
    account_mrr,
    mark_changed,
    plan_of,
    plan_snapshot,
    state_of,
    write_plan,
)
from service.services.accounts import get_account
from service.services.billing import GatewayFactory, billed_lines, store_billed
from service.services.ledger import ledger_balances, record_movement
from service.services.quotes import (
    TargetChange,
    authoritative_quote,
    quote_for_account,
)
from service.services.signals import signal_summary
from service.services.tokens import OFFER_PREFIX, ExpiredToken, InvalidToken, TokenSigner, from_unix

log = logging.getLogger("upshift.upgrades")


class IdempotencyKeyReused(ValidationFailed):
    code = "idempotency_key_reused"
    title = "Idempotency key reused"


class OfferExpired(Conflict):
    code = "offer_expired"
    title = "Offer expired"


class QuoteChanged(Conflict):
    code = "quote_changed"
    title = "Quote changed"


class StateChanged(Conflict):
    code = "state_changed"
    title = "Account changed"


class UpgradeInProgress(Conflict):
    """Another request is applying an upgrade to the account (or this very request, sent
    again before its first answer): 409, as the IETF Idempotency-Key draft asks of a retry
    while the original is still being processed."""

    code = "upgrade_in_progress"
    title = "Upgrade in progress"
    retry_after_s = 2


class _SameRequestRunning(UpgradeInProgress):
    pass


# A copy of a request waits this long for its first copy's answer before it is refused.
SAME_REQUEST_WAIT_S = 20.0

# One transaction per call: commits on success, rolls back on error (the route's passes the
# accounts it changed to the offer caches).
Units = Callable[[], AbstractContextManager[Session]]

IN_FLIGHT = "in_flight"
# How long a claim keeps other writers of the account waiting: longer than the Stripe calls of
# one upgrade can take (the client's timeout and its one retry), so only a dead process's claim
# runs out.
CLAIM_LEASE = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    account_id: str
    idempotency_key: str
    offer_token: str | None
    target: TargetChange | None
    expected_amount_due: int | None
    body: dict[str, Any]  # the request as sent, fingerprinted for idempotency


@dataclass(frozen=True, slots=True)
class UpgradeOutcome:
    status_code: int
    body: dict[str, Any]
    replayed: bool


@dataclass(frozen=True, slots=True)
class OfferClaims:
    offer_id: str
    target: Plan
    amount_due: int
    proration_date: datetime
    catalog_version: str
    account_version: int
    signal_ids: tuple[str, ...]


def upgrade_id_for(account_id: str, idempotency_key: str) -> str:
    """Deterministic, so a retry of the same request reuses the same provider idempotency key."""
    digest = hashlib.sha256(f"{account_id}\x00{idempotency_key}".encode()).hexdigest()
    return "upg_" + digest[:24]


def fingerprint(account_id: str, body: dict[str, Any]) -> str:
    canonical = json.dumps([account_id, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def read_offer(signer: TokenSigner, token: str, account_id: str, now: datetime) -> OfferClaims:
    try:
        claims = signer.verify(OFFER_PREFIX, token, now)
    except ExpiredToken:
        raise OfferExpired("the offer has expired; fetch the offers again") from None
    except InvalidToken as exc:
        raise ValidationFailed(
            exc.detail, field="offer_token", code="invalid_offer_token"
        ) from None
    if claims.get("acc") != account_id:
        raise ValidationFailed(
            "the offer was made to another account", field="offer_token", code="invalid_offer_token"
        )
    return OfferClaims(
        offer_id=claims["oid"],
        target=plan_from_json(claims["tgt"]),
        amount_due=int(claims["due"]),
        proration_date=from_unix(int(claims["pd"])),
        catalog_version=claims["cv"],
        account_version=int(claims["av"]),
        signal_ids=tuple(claims.get("sig", ())),
    )


def execute_upgrade(
    units: Units,
    catalog: Catalog,
    now: datetime,
    signer: TokenSigner,
    gateways: GatewayFactory,
    request: UpgradeRequest,
) -> UpgradeOutcome:
    """Apply an offer or an explicit target exactly once per (account, Idempotency-Key).

    `units()` opens one transaction. The account row is locked while the request is checked
    and re-quoted, so concurrent upgrades of one account run one after the other: a retry of a
    finished request replays its response, and any other request sees the new account version
    and gets 409 state_changed instead of a second charge.

    A remote provider (Stripe) is never called with the row locked: the first transaction
    claims the account for this upgrade (a leased `in_flight` row that other upgrades and the
    webhooks wait for), the provider is asked with no transaction open, and a second
    transaction locks the account again to book what the provider did. The local provider
    works in the database, so it runs in the one transaction.
    """
    waited_until = time.monotonic() + SAME_REQUEST_WAIT_S
    while True:
        try:
            with units() as session:
                gateway = gateways(session)
                begun = _begin(session, catalog, now, signer, gateway, request)
                if isinstance(begun, UpgradeOutcome):
                    return begun
                if not gateway.remote:  # the local provider: one transaction, row locked
                    quote, result = _call_provider(gateway, begun)
                    account = AccountRepository(session).get(request.account_id)
                    assert account is not None
                    return _finish(session, catalog, now, account, begun, quote, result)
            break
        except _SameRequestRunning:
            # The same request sent again while its first copy is with the provider: its
            # answer is the first one's, so wait for it (bounded) rather than refuse.
            if time.monotonic() > waited_until:
                raise
            time.sleep(0.05)
    if begun.waiting:
        # A payment that waited for the customer: ask the provider where it stands (no lock
        # held), then settle it as its webhook would.
        state = gateway.payment_state(begun.account.billing)
        with units() as session:
            account = get_account(session, request.account_id, for_update=True)
            settle_upgrades(
                session,
                catalog,
                account,
                plan=state.plan,
                pending_invoice=state.pending_invoice,
                mrr=state.mrr,
                now=now,
            )
            row = UpgradeRepository(session).get(begun.upgrade_id)
            assert row is not None
            return UpgradeOutcome(row.response_status, row.response_body, replayed=True)
    try:
        quote, result = _call_provider(gateway, begun)
    except BaseException:
        with units() as session:
            UpgradeRepository(session).release(begun.upgrade_id)
        raise
    with units() as session:
        account = get_account(session, request.account_id, for_update=True)
        return _finish(session, catalog, now, account, begun, quote, result)


@dataclass(frozen=True, slots=True)
class _Begun:
    """An upgrade checked and quoted by the local engine under the account's row lock."""

    upgrade_id: str
    request_hash: str
    account: AccountState
    quote: Quote | None  # None while `waiting`
    offer: OfferClaims | None
    request: UpgradeRequest
    waiting: bool = False  # a retry of an upgrade whose payment waits for the customer


def _begin(
    session: Session,
    catalog: Catalog,
    now: datetime,
    signer: TokenSigner,
    gateway: BillingGateway,
    request: UpgradeRequest,
) -> UpgradeOutcome | _Begun:
    """Lock the account; replay a finished request; quote a new one (and, for a remote
    provider, claim the account for it)."""
    account = get_account(session, request.account_id, for_update=True)
    request_hash = fingerprint(request.account_id, request.body)
    upgrades = UpgradeRepository(session)
    upgrade_id = upgrade_id_for(request.account_id, request.idempotency_key)
    previous = upgrades.by_key(request.account_id, request.idempotency_key)
    if previous is not None and previous.request_hash != request_hash:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used for a different request", field="Idempotency-Key"
        )
    if previous is not None and previous.status == "requires_action" and gateway.remote:
        state = state_of(account)
        return _Begun(upgrade_id, request_hash, state, None, None, request, waiting=True)
    if previous is not None and previous.status != IN_FLIGHT:
        return UpgradeOutcome(previous.response_status, previous.response_body, replayed=True)
    running = upgrades.in_flight(request.account_id, now)
    if running is not None and running.id == upgrade_id:
        raise _SameRequestRunning(
            "this request is still being applied; retry with the same Idempotency-Key"
        )
    if running is not None:
        raise UpgradeInProgress(
            "another upgrade of this account is being applied right now; retry in a moment"
        )
    state = state_of(account)
    quote, offer = _requote(session, catalog, state, now, signer, request)
    if gateway.remote:
        # The claim: other upgrades of the account and Stripe's webhooks wait for it; a
        # process that dies holding it lets go when the lease ends (a retry then takes over).
        upgrades.claim(
            UpgradeRow(
                id=upgrade_id,
                account_id=request.account_id,
                idempotency_key=request.idempotency_key,
                request_hash=request_hash,
                offer_id=offer.offer_id if offer else None,
                status=IN_FLIGHT,
                response_status=0,
                response_body={},
                created_at=now,
                pending={"lease_until": _iso(now + CLAIM_LEASE)},
            )
        )
    return _Begun(upgrade_id, request_hash, state, quote, offer, request)


def _call_provider(
    gateway: BillingGateway, begun: _Begun
) -> tuple[Quote, AppliedChange | ScheduledChange]:
    """The provider's price is the authority (refused with 409 if it differs from what was
    offered), then the change is applied now or scheduled for the period end."""
    assert begun.quote is not None
    quote = _confirm_price(gateway, begun.account, begun.quote, begun.offer, begun.request)
    billing = begun.account.billing
    if quote.timing is Timing.immediate:
        return quote, gateway.apply(billing, quote, f"upshift:upgrade:{begun.upgrade_id}")
    return quote, gateway.schedule(billing, quote, f"upshift:schedule:{begun.upgrade_id}")


def _finish(
    session: Session,
    catalog: Catalog,
    now: datetime,
    account: AccountRow,
    begun: _Begun,
    quote: Quote,
    result: AppliedChange | ScheduledChange,
) -> UpgradeOutcome:
    """Book what the provider did; `account`'s row is locked."""
    upgrade_id = begun.upgrade_id
    change = ChangeRecord.of(quote, begun.offer, account.id)
    status_code, pending = 200, None
    if isinstance(result, ScheduledChange):
        _schedule(session, account, quote, result.schedule_id, upgrade_id, now)
        body = _outcome(account, change, upgrade_id, "scheduled", None, None)
    elif result.action is not None:
        # Nothing is charged or changed yet: the provider applies the change once the customer
        # completes the payment, and its webhook (or a retry) settles it (settle_upgrades). A
        # downgrade waiting for the period end is dropped, as the provider's schedule was: the
        # customer chose this change instead.
        ScheduledChangeRepository(session).cancel_pending(account.id)
        mark_changed(session, account.id)
        status_code, body = 402, _awaiting_payment(account.id, change, upgrade_id, result)
        pending = {"change": change.to_json(), "applied": applied_to_json(result)}
    elif plan_of(account).matches(change.target) and not change.current.matches(change.target):
        # The claim's lease ran out while the provider was slow and Stripe's webhook brought
        # the account to the change meanwhile (booked as a webhook movement): not twice.
        log.warning("upgrade %s was already synced from the provider", upgrade_id)
        body = _outcome(account, change, upgrade_id, "applied", result, None)
    else:
        entry_id = _apply(session, catalog, now, account, change, result, upgrade_id)
        body = _outcome(account, change, upgrade_id, "applied", result, entry_id)
    row = UpgradeRepository(session).get(upgrade_id) or UpgradeRow(
        id=upgrade_id,
        account_id=account.id,
        idempotency_key=begun.request.idempotency_key,
        request_hash=begun.request_hash,
        created_at=now,
    )
    row.offer_id = change.offer_id
    row.status = body["status"] if status_code == 200 else "requires_action"
    row.response_status, row.response_body, row.pending = status_code, body, pending
    UpgradeRepository(session).add(row)
    return UpgradeOutcome(status_code, body, replayed=False)


def settle_upgrades(
    session: Session,
    catalog: Catalog,
    account: AccountRow,
    *,
    plan: Plan | None,
    pending_invoice: str | None,
    mrr: Money | None,
    now: datetime,
) -> list[str]:
    """Bring the account's upgrades that wait for a payment up to date with the provider, whose
    subscription now has `plan` and still waits on `pending_invoice` (None: no pending update)
    and bills `mrr` a month (None: the catalog's list price).

    Paid (the provider applied the change): the account takes the change and the ledger its one
    entry, attributed to the offer as if it had been charged at once; a retry of the request
    then replays 200. Dropped (the pending update expired, or another change replaced it): the
    upgrade answers 402 `payment_not_completed` and nothing was charged. Still waiting: left
    as it is. Returns what happened, for the webhook's receipt. The account row is locked.
    """
    outcomes = []
    for row in UpgradeRepository(session).awaiting_payment(account.id):
        assert row.pending is not None
        change = ChangeRecord.from_json(row.pending["change"])
        applied = applied_from_json(row.pending["applied"], change.amount_due.currency)
        if pending_invoice is not None and pending_invoice == applied.invoice_id:
            continue  # the customer has not completed the payment yet
        if pending_invoice is None and plan is not None and plan.matches(change.target):
            # Stripe collected the invoice's amount, the quoted one.
            charged = replace(applied, amount_charged=change.amount_due, action=None, mrr=mrr)
            if plan_of(account).matches(change.target):
                entry_id = None  # an earlier sync already brought the account to it
            else:
                entry_id = _apply(session, catalog, now, account, change, charged, row.id)
            row.status, row.response_status = "applied", 200
            row.response_body = _outcome(account, change, row.id, "applied", charged, entry_id)
            outcomes.append(f"upgrade {row.id} paid and applied")
        else:
            row.status, row.response_status = "expired", 402
            row.response_body = _problem(
                account.id,
                "payment_not_completed",
                "Payment not completed",
                "the payment for this change was not completed in time, so nothing was charged "
                "and the plan is unchanged; fetch the offers again",
                {"upgrade_id": row.id, "invoice_id": applied.invoice_id},
            )
            outcomes.append(f"upgrade {row.id} dropped unpaid")
        row.pending = None
        session.flush()
    return outcomes


def _requote(
    session: Session,
    catalog: Catalog,
    account: AccountState,
    now: datetime,
    signer: TokenSigner,
    request: UpgradeRequest,
) -> tuple[Quote, OfferClaims | None]:
    """Price the change again (local engine) against the locked account; refuse if anything
    moved since the offer."""
    billed = billed_lines(session, catalog, account)
    if request.offer_token is None:
        assert request.target is not None
        target = request.target.applied_to(catalog, account.plan)
        at_term_end = request.target.at_term_end
        return quote_for_account(
            catalog, account, billed, target, now, at_term_end=at_term_end
        ), None
    offer = read_offer(signer, request.offer_token, account.id, now)
    quote = None
    if offer.account_version == account.version:
        quote = quote_for_account(catalog, account, billed, offer.target, now, offer.proration_date)
    # The target is priced at the version it was offered at (the account's own, or the one in
    # force for a new tier): another one now means another price list.
    repriced = quote is not None and quote.catalog_version != offer.catalog_version
    if quote is None or repriced:
        # The offer came from a stale cached plan: drop it, so "fetch the offers again" gets
        # fresh ones even from a process that missed the change.
        mark_changed(session, account.id)
    if quote is None:
        raise StateChanged("the account changed since the offer was made; fetch the offers again")
    if repriced:
        raise QuoteChanged("prices changed since the offer was made; fetch the offers again")
    return quote, offer


def _confirm_price(
    gateway: BillingGateway,
    account: AccountState,
    quote: Quote,
    offer: OfferClaims | None,
    request: UpgradeRequest,
) -> Quote:
    """The billing provider's preview is the authority at confirm (Stripe: discounts, tax,
    credit balance); refuse with 409 quote_changed when it is not what the customer saw."""
    quote = authoritative_quote(gateway, account, quote)
    if offer is None:
        if (
            request.expected_amount_due is not None
            and request.expected_amount_due != quote.amount_due.minor
        ):
            raise _quote_changed(
                quote,
                f"the amount due is now {quote.amount_due.minor}, not "
                f"{request.expected_amount_due}{_why(quote)}; review the new quote",
            )
        return quote
    # The customer may confirm the provider's amount they were shown (the 409 below names it).
    accepted = (
        request.expected_amount_due if request.expected_amount_due is not None else offer.amount_due
    )
    if quote.amount_due.minor != accepted:
        # The offer was priced by the local engine. Counted in /metrics as
        # upshift_problems{code="quote_changed"}.
        log.warning(
            "quote for %s differs at confirm: offered %d, %s says %d",
            account.id,
            offer.amount_due,
            gateway.name,
            quote.amount_due.minor,
        )
        raise _quote_changed(
            quote,
            f"the amount due is now {quote.amount_due.minor}, not {accepted}{_why(quote)}; "
            "fetch the offers again, or confirm this offer with expected_amount_due_minor "
            f"{quote.amount_due.minor}",
        )
    return quote


def _quote_changed(quote: Quote, detail: str) -> QuoteChanged:
    """409 quote_changed with what a client needs to show the provider's price and confirm it
    (the widget does): the amount due and why it differs from the list price."""
    changed = QuoteChanged(detail)
    changed.extra = {
        "amount_due": quote.amount_due.as_json(),
        "price_explained": quote.breakdown.describe() if quote.breakdown else None,
    }
    return changed


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """What applying a quoted change needs of the quote and the offer, kept (as JSON) while
    its payment waits for the customer."""

    current: Plan
    target: Plan
    kind: str
    proration_date: datetime
    effective_at: datetime
    amount_due: Money
    new_mrr: Money
    offer_id: str | None
    signal_ids: tuple[str, ...]

    @classmethod
    def of(cls, quote: Quote, offer: OfferClaims | None, account_id: str) -> ChangeRecord:
        return cls(
            current=quote.current,
            target=quote.target,
            kind=quote.kind.value,
            proration_date=quote.proration_date,
            effective_at=quote.effective_at,
            amount_due=quote.amount_due,
            new_mrr=quote.new_mrr,
            offer_id=offer.offer_id if offer else None,
            signal_ids=offer.signal_ids if offer else (),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "current": plan_to_json(self.current),
            "target": plan_to_json(self.target),
            "kind": self.kind,
            "proration_date": _iso(self.proration_date),
            "effective_at": _iso(self.effective_at),
            "amount_due": self.amount_due.as_json(),
            "new_mrr": self.new_mrr.as_json(),
            "offer_id": self.offer_id,
            "signal_ids": list(self.signal_ids),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ChangeRecord:
        return cls(
            current=plan_from_json(doc["current"]),
            target=plan_from_json(doc["target"]),
            kind=str(doc["kind"]),
            proration_date=_parse_iso(doc["proration_date"]),
            effective_at=_parse_iso(doc["effective_at"]),
            amount_due=Money.from_json(doc["amount_due"]),
            new_mrr=Money.from_json(doc["new_mrr"]),
            offer_id=doc.get("offer_id"),
            signal_ids=tuple(doc.get("signal_ids") or ()),
        )


def applied_to_json(applied: AppliedChange) -> dict[str, Any]:
    action = applied.action
    return {
        "invoice_id": applied.invoice_id,
        "subscription_id": applied.subscription_id,
        "customer_id": applied.customer_id,
        "period": [_iso(applied.period.start), _iso(applied.period.end)],
        "billed": [
            {
                "key": line.key,
                "description": line.description,
                "unit_amount": line.unit_amount.as_json(),
                "quantity": line.quantity,
                "billed_minor": line.billed_minor,
                "billed_from": _iso(line.billed_from),
            }
            for line in applied.billed
        ],
        "hosted_url": action.hosted_url if action else None,
        "expires_at": _iso(action.expires_at) if action and action.expires_at else None,
    }


def applied_from_json(doc: dict[str, Any], currency: str) -> AppliedChange:
    return AppliedChange(
        invoice_id=doc.get("invoice_id"),
        amount_charged=Money.zero(currency),
        subscription_id=doc.get("subscription_id"),
        customer_id=doc.get("customer_id"),
        period=Period(_parse_iso(doc["period"][0]), _parse_iso(doc["period"][1])),
        billed=tuple(
            BilledLine(
                key=line["key"],
                description=line["description"],
                unit_amount=Money.from_json(line["unit_amount"]),
                quantity=int(line["quantity"]),
                billed_minor=int(line["billed_minor"]),
                billed_from=_parse_iso(line["billed_from"]),
            )
            for line in doc["billed"]
        ),
    )


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _why(quote: Quote) -> str:
    """How the billing provider's price differs from the list price, for a 409's detail."""
    return f" ({quote.breakdown.describe()})" if quote.breakdown is not None else ""


def _apply(
    session: Session,
    catalog: Catalog,
    now: datetime,
    account: AccountRow,
    change: ChangeRecord,
    applied: AppliedChange,
    upgrade_id: str,
) -> int | None:
    """Bring the account, its billed lines and the ledger to the applied change."""
    if applied.action is None and applied.amount_charged.minor != max(change.amount_due.minor, 0):
        # The quote was shown to the customer; a provider charging something else is a bug to
        # see at once, not to paper over.
        log.error(
            "provider charged %s for upgrade %s quoted at %s",
            applied.amount_charged,
            upgrade_id,
            change.amount_due,
        )
    # From the ledger's own balance, not a repricing: the two agree for a paying account, and
    # where they do not (a trial, a catalog change) the ledger must stay in step with itself.
    before_mrr = ledger_balances(session, account.id).get(account.currency, 0)
    target = change.target
    write_plan(account, target)
    account.current_period_start = applied.period.start
    account.current_period_end = applied.period.end
    account.billing_subscription_id = applied.subscription_id or account.billing_subscription_id
    account.billing_customer_id = applied.customer_id or account.billing_customer_id
    account.updated_at = now
    session.flush()
    ScheduledChangeRepository(session).cancel_pending(account.id)
    mark_changed(session, account.id)
    store_billed(session, catalog, account.id, target, applied.billed)
    signals = signal_summary(session, catalog, account, now)
    entry = record_movement(
        session,
        account_id=account.id,
        currency=account.currency,
        mrr_before=before_mrr,
        # What the provider bills a month (Stripe: after forever discounts), else list price.
        mrr_after=(applied.mrr or account_mrr(catalog, account)).minor,
        before=plan_snapshot(change.current),
        after=plan_snapshot(target),
        source=Source.SELF_SERVE_OFFER if change.offer_id else Source.API,
        idempotency_key=f"upgrade:{upgrade_id}",
        occurred_at=now,
        catalog_version=account.catalog_version,
        attribution=Attribution(
            motion=Motion(signals.motion),
            offer_id=change.offer_id,
            signal_ids=change.signal_ids,
            days_since_activation=signals.days_since_activation,
        ),
        stripe_invoice_id=applied.invoice_id,
        stripe_subscription_id=applied.subscription_id,
    )
    return entry.id if entry is not None else None


def _schedule(
    session: Session,
    account: AccountRow,
    quote: Quote,
    schedule_id: str | None,
    upgrade_id: str,
    now: datetime,
) -> dict[str, Any]:
    schedules = ScheduledChangeRepository(session)
    schedules.cancel_pending(account.id)
    schedules.add(
        ScheduledChangeRow(
            id=upgrade_id,
            account_id=account.id,
            target=plan_to_json(quote.target),
            effective_at=quote.effective_at,
            status="pending",
            external_id=schedule_id,
            created_at=now,
        )
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _outcome(
    account: AccountRow,
    change: ChangeRecord,
    upgrade_id: str,
    status: str,
    applied: AppliedChange | None,
    ledger_entry_id: int | None,
) -> dict[str, Any]:
    """The response body, stored so that a retry with the same key gets it back verbatim."""
    charged = applied.amount_charged.minor if applied else 0
    return {
        "upgrade_id": upgrade_id,
        "account_id": account.id,
        "status": status,
        "offer_id": change.offer_id,
        "change": change.kind,
        "target": plan_to_json(change.target),
        "proration_date": _iso(change.proration_date),
        "effective_at": _iso(change.effective_at),
        "invoice_id": applied.invoice_id if applied else None,
        "amount_charged": {"amount_minor": charged, "currency": account.currency},
        "new_mrr": change.new_mrr.as_json(),
        "account_version": account.version,
        "ledger_entry_id": ledger_entry_id,
    }


def _problem(
    account_id: str, code: str, title: str, detail: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """A stored problem+json answer (RFC 9457, with extension members) for a replayed 402."""
    return {
        "type": f"/problems/{code}",
        "title": title,
        "status": 402,
        "detail": detail,
        "instance": f"/v1/accounts/{account_id}/upgrades",
        "code": code,
        **extra,
    }


def _awaiting_payment(
    account_id: str, change: ChangeRecord, upgrade_id: str, applied: AppliedChange
) -> dict[str, Any]:
    """402 `requires_action`: the customer must complete the payment (3-D Secure) on the
    provider's page; the upgrade is applied when it is paid, and a retry with the same
    Idempotency-Key tells which it is now."""
    action = applied.action
    assert action is not None
    return _problem(
        account_id,
        "requires_action",
        "Payment needs the customer's confirmation",
        "the bank asks the customer to confirm this payment; open hosted_invoice_url to confirm "
        "it. The upgrade is applied once it is paid; nothing is charged or changed until then",
        {
            "upgrade_id": upgrade_id,
            "invoice_id": action.invoice_id,
            "hosted_invoice_url": action.hosted_url,
            "expires_at": _iso(action.expires_at) if action.expires_at else None,
            "amount_due": change.amount_due.as_json(),
            "target": plan_to_json(change.target),
        },
    )
