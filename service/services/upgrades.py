"""One-click upgrades: verify the offer, re-quote, charge once, update the account and ledger."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.adapters.billing_repository import ScheduledChangeRepository, UpgradeRepository
from service.adapters.billing_tables import ScheduledChangeRow, UpgradeRow
from service.adapters.orm import AccountRow
from service.adapters.repositories import AccountRepository
from service.domain.accounts import Plan, plan_from_json, plan_to_json
from service.domain.catalog import Catalog, Timing
from service.domain.errors import Conflict, NotFound, ValidationFailed
from service.domain.ledger import Attribution, Motion, Source
from service.domain.quotes import Quote
from service.ports import AppliedChange, BillingGateway
from service.services.account_state import (
    AccountState,
    account_mrr,
    mark_changed,
    plan_snapshot,
    state_of,
)
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
    session: Session,
    catalog: Catalog,
    now: datetime,
    signer: TokenSigner,
    gateways: GatewayFactory,
    request: UpgradeRequest,
) -> UpgradeOutcome:
    """Apply an offer or an explicit target exactly once per (account, Idempotency-Key).

    The account row is locked first, so concurrent upgrades of one account run one after the
    other: a retry of a finished request replays its response, and any other request sees the
    new account version and gets 409 state_changed instead of a second charge.
    """
    gateway = gateways(session)
    account = AccountRepository(session).get(request.account_id, for_update=True)
    if account is None:
        raise NotFound(f"account '{request.account_id}' not found", code="account_not_found")
    request_hash = fingerprint(request.account_id, request.body)
    upgrades = UpgradeRepository(session)
    previous = upgrades.by_key(request.account_id, request.idempotency_key)
    if previous is not None:
        if previous.request_hash != request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a different request",
                field="Idempotency-Key",
            )
        return UpgradeOutcome(previous.response_status, previous.response_body, replayed=True)

    quote, offer = _requote(session, catalog, state_of(account), now, signer, gateway, request)
    upgrade_id = upgrade_id_for(request.account_id, request.idempotency_key)
    billing = state_of(account).billing
    if quote.timing is Timing.immediate:
        applied = gateway.apply(billing, quote, f"upshift:upgrade:{upgrade_id}")
        entry_id = _apply(session, catalog, now, account, quote, offer, applied, upgrade_id)
        body = _outcome(account, quote, offer, upgrade_id, "applied", applied, entry_id)
    else:
        scheduled = gateway.schedule(billing, quote, f"upshift:schedule:{upgrade_id}")
        _schedule(session, account, quote, scheduled.schedule_id, upgrade_id, now)
        body = _outcome(account, quote, offer, upgrade_id, "scheduled", None, None)
    upgrades.add(
        UpgradeRow(
            id=upgrade_id,
            account_id=request.account_id,
            idempotency_key=request.idempotency_key,
            request_hash=request_hash,
            offer_id=offer.offer_id if offer else None,
            status=body["status"],
            response_status=200,
            response_body=body,
            created_at=now,
        )
    )
    return UpgradeOutcome(200, body, replayed=False)


def _requote(
    session: Session,
    catalog: Catalog,
    account: AccountState,
    now: datetime,
    signer: TokenSigner,
    gateway: BillingGateway,
    request: UpgradeRequest,
) -> tuple[Quote, OfferClaims | None]:
    """Price the change again against the locked account; refuse if anything moved."""
    billed = billed_lines(session, catalog, account)
    if request.offer_token is None:
        assert request.target is not None
        target = request.target.applied_to(catalog, account.plan)
        quote = authoritative_quote(
            gateway, account, quote_for_account(catalog, account, billed, target, now)
        )
        if (
            request.expected_amount_due is not None
            and request.expected_amount_due != quote.amount_due.minor
        ):
            raise QuoteChanged(
                f"the amount due is now {quote.amount_due.minor}, not "
                f"{request.expected_amount_due}{_why(quote)}; review the new quote"
            )
        return quote, None
    offer = read_offer(signer, request.offer_token, account.id, now)
    if offer.catalog_version != catalog.version or offer.account_version != account.version:
        # The offer came from a stale cached plan: drop it, so "fetch the offers again" gets
        # fresh ones even from a process that missed the change.
        mark_changed(session, account.id)
    if offer.catalog_version != catalog.version:
        raise QuoteChanged("prices changed since the offer was made; fetch the offers again")
    if offer.account_version != account.version:
        raise StateChanged("the account changed since the offer was made; fetch the offers again")
    quote = authoritative_quote(
        gateway,
        account,
        quote_for_account(catalog, account, billed, offer.target, now, offer.proration_date),
    )
    # The customer may confirm the provider's amount they were shown (the 409 below names it).
    accepted = (
        request.expected_amount_due if request.expected_amount_due is not None else offer.amount_due
    )
    if quote.amount_due.minor != accepted:
        # The offer was priced by the local engine; the billing provider's preview is the
        # authority at confirm (Stripe: discounts, tax, credit balance). Counted in /metrics as
        # upshift_problems{code="quote_changed"}.
        log.warning(
            "quote for %s differs at confirm: offered %d, %s says %d",
            account.id,
            offer.amount_due,
            gateway.name,
            quote.amount_due.minor,
        )
        raise QuoteChanged(
            f"the amount due is now {quote.amount_due.minor}, not {accepted}{_why(quote)}; "
            "fetch the offers again, or confirm this offer with expected_amount_due_minor "
            f"{quote.amount_due.minor}"
        )
    return quote, offer


def _why(quote: Quote) -> str:
    """How the billing provider's price differs from the list price, for a 409's detail."""
    return f" ({quote.breakdown.describe()})" if quote.breakdown is not None else ""


def _apply(
    session: Session,
    catalog: Catalog,
    now: datetime,
    account: AccountRow,
    quote: Quote,
    offer: OfferClaims | None,
    applied: AppliedChange,
    upgrade_id: str,
) -> int | None:
    """Bring the account, its billed lines and the ledger to the applied change."""
    if applied.amount_charged.minor != max(quote.amount_due.minor, 0):
        # The quote was shown to the customer; a provider charging something else is a bug to
        # see at once, not to paper over.
        log.error(
            "provider charged %s for upgrade %s quoted at %s",
            applied.amount_charged,
            upgrade_id,
            quote.amount_due,
        )
    # From the ledger's own balance, not a repricing: the two agree for a paying account, and
    # where they do not (a trial, a catalog change) the ledger must stay in step with itself.
    before_mrr = ledger_balances(session, account.id).get(account.currency, 0)
    target = quote.target
    account.tier = target.tier
    account.interval = target.interval.value
    account.seats = target.seats
    account.addons = dict(sorted(target.addons.items()))
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
        before=plan_snapshot(quote.current),
        after=plan_snapshot(target),
        source=Source.SELF_SERVE_OFFER if offer else Source.API,
        idempotency_key=f"upgrade:{upgrade_id}",
        occurred_at=now,
        catalog_version=catalog.version,
        attribution=Attribution(
            motion=Motion(signals.motion),
            offer_id=offer.offer_id if offer else None,
            signal_ids=offer.signal_ids if offer else (),
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
    quote: Quote,
    offer: OfferClaims | None,
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
        "offer_id": offer.offer_id if offer else None,
        "change": quote.kind.value,
        "target": plan_to_json(quote.target),
        "proration_date": _iso(quote.proration_date),
        "effective_at": _iso(quote.effective_at),
        "invoice_id": applied.invoice_id if applied else None,
        "amount_charged": {"amount_minor": charged, "currency": account.currency},
        "new_mrr": {"amount_minor": quote.new_mrr.minor, "currency": quote.new_mrr.currency},
        "account_version": account.version,
        "ledger_entry_id": ledger_entry_id,
    }
