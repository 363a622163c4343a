"""Upgrade offers for an account: ranked, priced with an exact quote, signed, and recorded."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from service.adapters.orm import AccountRow
from service.domain.accounts import plan_to_json
from service.domain.catalog import Catalog
from service.domain.errors import DomainError
from service.domain.offers import OfferCandidate, OfferEngine, candidates, rank
from service.domain.proration import BilledLine
from service.domain.quotes import Quote, plan_mrr
from service.domain.thresholds import SignalSummary
from service.domain.usage import FeatureUsage
from service.ports import BillingGateway
from service.services.account_state import AccountState, state_of
from service.services.billing import billed_lines
from service.services.quotes import authoritative_quote, quote_for_account
from service.services.signals import signal_summary
from service.services.tokens import OFFER_PREFIX, TokenSigner, unix
from service.services.usage import usage_snapshot

OFFER_TTL = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class OfferInputs:
    """Everything offers are computed from: immutable, so it can be cached between requests."""

    account: AccountState
    billed: tuple[BilledLine, ...]
    usage: Mapping[str, FeatureUsage]
    signals: SignalSummary


@dataclass(frozen=True, slots=True)
class PricedOffer:
    id: str
    candidate: OfferCandidate
    quote: Quote | None
    score: int
    expires_at: datetime
    token: str | None


@dataclass(frozen=True, slots=True)
class AccountOffers:
    account_id: str
    in_activation_window: bool
    offers: tuple[PricedOffer, ...]


def load_offer_inputs(
    session: Session, catalog: Catalog, account: AccountRow, now: datetime
) -> OfferInputs:
    state = state_of(account)
    return OfferInputs(
        account=state,
        billed=billed_lines(session, catalog, state),
        usage=usage_snapshot(session, catalog, account, now).features,
        signals=signal_summary(session, catalog, account, now),
    )


def offer_id(
    account: AccountState, candidate: OfferCandidate, pinned: datetime, version: str
) -> str:
    """Deterministic: the same offer to the same account state in the same second has one id."""
    target = plan_to_json(candidate.target) if candidate.target else {"tier": candidate.target_tier}
    material = json.dumps(
        [account.id, account.version, candidate.engine.value, target, unix(pinned), version],
        sort_keys=True,
    )
    return "off_" + hashlib.sha256(material.encode()).hexdigest()[:24]


def sign_offer(
    signer: TokenSigner,
    account: AccountState,
    oid: str,
    candidate: OfferCandidate,
    quote: Quote,
    expires_at: datetime,
) -> str:
    assert candidate.target is not None
    return signer.sign(
        OFFER_PREFIX,
        {
            "acc": account.id,
            "oid": oid,
            "eng": candidate.engine.value,
            "tgt": plan_to_json(candidate.target),
            "due": quote.amount_due.minor,
            "cur": quote.amount_due.currency,
            "pd": unix(quote.proration_date),
            "cv": quote.catalog_version,
            "av": account.version,
            "sig": list(candidate.signal_ids),
            "exp": unix(expires_at),
        },
    )


def compute_offers(
    catalog: Catalog,
    inputs: OfferInputs,
    now: datetime,
    signer: TokenSigner,
    gateway: BillingGateway | None,
) -> AccountOffers:
    """The account's offers, best first, each priced at `now` and signed (`gateway` None: the
    local engine is the price authority)."""
    account, signals = inputs.account, inputs.signals
    current_mrr = plan_mrr(catalog, account.plan).minor
    priced: list[tuple[OfferCandidate, int | None]] = []
    quotes: dict[int, Quote] = {}
    for candidate in candidates(catalog, account.plan, inputs.usage, signals):
        if candidate.target is None:
            priced.append((candidate, None))
            continue
        try:
            quote = authoritative_quote(
                gateway,
                account,
                quote_for_account(catalog, account, inputs.billed, candidate.target, now),
            )
        except DomainError:
            continue  # not sellable right now (path closed, period over): never show it
        quotes[id(candidate)] = quote
        priced.append((candidate, quote.new_mrr.minor - current_mrr))

    offers: list[PricedOffer] = []
    for candidate, _step in rank(priced, signals.in_window):
        quote = quotes.get(id(candidate))
        pinned = quote.proration_date if quote else now.replace(microsecond=0)
        expires_at = pinned + OFFER_TTL
        if quote is not None:
            expires_at = min(expires_at, quote.period.end)
        oid = offer_id(account, candidate, pinned, catalog.version)
        token = (
            sign_offer(signer, account, oid, candidate, quote, expires_at)
            if quote is not None
            else None
        )
        offers.append(
            PricedOffer(
                oid, candidate, quote, candidate.score(signals.in_window), expires_at, token
            )
        )
    return AccountOffers(account.id, signals.in_window, tuple(offers))


def impression_rows(
    catalog: Catalog, inputs: OfferInputs, offers: AccountOffers, now: datetime
) -> list[dict[str, Any]]:
    """One offer_impressions row per offer shown, for the funnel."""
    days = inputs.signals.days_since_activation
    window = catalog.signals.post_activation_window_days
    in_window = days is not None and 0 <= days < window
    return [
        {
            "offer_id": offer.id,
            "account_id": inputs.account.id,
            "engine": offer.candidate.engine.value,
            "target": plan_to_json(offer.candidate.target)
            if offer.candidate.target
            else {"tier": offer.candidate.target_tier},
            "amount_due_minor": offer.quote.amount_due.minor if offer.quote else None,
            "currency": inputs.account.currency,
            "reason_codes": list(offer.candidate.reasons),
            "signal_ids": list(offer.candidate.signal_ids),
            "days_since_activation": days,
            "in_activation_window": in_window,
            "catalog_version": catalog.version,
            "shown_at": now,
        }
        for offer in offers.offers
    ]


def is_sales_assisted(offer: PricedOffer) -> bool:
    return offer.candidate.engine is OfferEngine.sales_assisted
