"""Upgrade offers for an account: ranked, priced with an exact quote, signed, and recorded."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from service.adapters.offer_tables import OfferImpressionRow
from service.adapters.orm import AccountRow
from service.domain.accounts import Plan
from service.domain.catalog import Catalog
from service.domain.errors import DomainError, NotFound
from service.domain.offers import OfferCandidate, OfferEngine, candidates, rank
from service.domain.quotes import Quote, plan_mrr
from service.services.accounts import plan_of
from service.services.quotes import quote_for_account
from service.services.tokens import OFFER_PREFIX, TokenSigner, unix

OFFER_TTL = timedelta(minutes=15)


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


def plan_claims(plan: Plan) -> dict[str, object]:
    return {
        "tier": plan.tier,
        "interval": plan.interval.value,
        "seats": plan.seats,
        "addons": dict(sorted(plan.addons.items())),
    }


def offer_id(account: AccountRow, candidate: OfferCandidate, pinned: datetime, version: str) -> str:
    """Deterministic: the same offer to the same account state in the same second has one id."""
    target = plan_claims(candidate.target) if candidate.target else {"tier": candidate.target_tier}
    material = json.dumps(
        [account.id, account.version, candidate.engine.value, target, unix(pinned), version],
        sort_keys=True,
    )
    return "off_" + hashlib.sha256(material.encode()).hexdigest()[:24]


def sign_offer(
    signer: TokenSigner,
    account: AccountRow,
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
            "tgt": plan_claims(candidate.target),
            "due": quote.amount_due.minor,
            "cur": quote.amount_due.currency,
            "pd": unix(quote.proration_date),
            "cv": quote.catalog_version,
            "av": account.version,
            "sig": list(candidate.signal_ids),
            "exp": unix(expires_at),
        },
    )


def upgrade_offers(
    session: Session,
    catalog: Catalog,
    account: AccountRow,
    now: datetime,
    signer: TokenSigner,
) -> AccountOffers:
    """The account's offers, best first; every offer returned is recorded as an impression."""
    # TODO(integration): top-level imports once the usage area has landed.
    try:
        from service.services.signals import signal_summary
        from service.services.usage import usage_snapshot
    except ImportError:
        raise NotFound("offers are not available yet", code="offers_unavailable") from None

    plan = plan_of(account)
    usage = usage_snapshot(session, catalog, account, now)
    signals = signal_summary(session, catalog, account, now)
    current_mrr = plan_mrr(catalog, plan).minor
    priced: list[tuple[OfferCandidate, int | None]] = []
    quotes: dict[int, Quote] = {}
    for candidate in candidates(catalog, plan, usage.features, signals):
        if candidate.target is None:
            priced.append((candidate, None))
            continue
        try:
            quote = quote_for_account(catalog, account, candidate.target, now)
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
    record_impressions(session, catalog, account, offers, signals.days_since_activation, now)
    return AccountOffers(account.id, signals.in_window, tuple(offers))


def record_impressions(
    session: Session,
    catalog: Catalog,
    account: AccountRow,
    offers: list[PricedOffer],
    days_since_activation: int | None,
    now: datetime,
) -> None:
    window = catalog.signals.post_activation_window_days
    in_window = days_since_activation is not None and 0 <= days_since_activation < window
    session.add_all(
        OfferImpressionRow(
            offer_id=offer.id,
            account_id=account.id,
            engine=offer.candidate.engine.value,
            target=plan_claims(offer.candidate.target)
            if offer.candidate.target
            else {"tier": offer.candidate.target_tier},
            amount_due_minor=offer.quote.amount_due.minor if offer.quote else None,
            currency=account.currency,
            reason_codes=list(offer.candidate.reasons),
            signal_ids=list(offer.candidate.signal_ids),
            days_since_activation=days_since_activation,
            in_activation_window=in_window,
            catalog_version=catalog.version,
            shown_at=now,
        )
        for offer in offers
    )


def is_sales_assisted(offer: PricedOffer) -> bool:
    return offer.candidate.engine is OfferEngine.sales_assisted
