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
from service.domain.quotes import PreparedChange, Quote, plan_mrr
from service.domain.thresholds import SignalSummary
from service.domain.usage import FeatureUsage
from service.ports import BillingGateway
from service.services.account_state import AccountState, state_of
from service.services.billing import billed_lines
from service.services.impressions import Impression, ImpressionStatic
from service.services.quotes import authoritative_quote, prepare_for_account, price_for_account
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
    snapshot = usage_snapshot(session, catalog, account, now)
    return OfferInputs(
        account=state,
        billed=billed_lines(session, catalog, state),
        usage=snapshot.features,
        signals=signal_summary(session, catalog, account, now, snapshot),
    )


@dataclass(frozen=True, slots=True)
class PlannedOffer:
    """A ranked candidate with its change prepared (None: nothing to price, talk to sales)."""

    candidate: OfferCandidate
    change: PreparedChange | None
    score: int
    target: Mapping[str, Any]  # as JSON: the plan, or {"tier": ...} for sales-assisted
    signal_ids: list[str]
    id_material: tuple[str, str]  # see offer_id_material
    impression: ImpressionStatic  # the columns of its impressions that never vary


@dataclass(frozen=True, slots=True)
class OfferPlan:
    """An account's offers, ranked, with everything that does not depend on the moment they are
    priced at: built from OfferInputs once per cache entry, priced on every page load. It keeps
    only what pricing needs (not the usage and signals behind the candidates): it is cached."""

    account: AccountState
    billed: tuple[BilledLine, ...]
    in_window: bool
    offers: tuple[PlannedOffer, ...]


def offer_id_material(
    account: AccountState, candidate: OfferCandidate, target: Mapping[str, Any], version: str
) -> tuple[str, str]:
    """What an offer id hashes, around the pinned second: the JSON text of
    [account id, account version, engine, target, pinned unix second, catalog version]."""
    head = ", ".join(
        json.dumps(part, sort_keys=True)
        for part in (account.id, account.version, candidate.engine.value, target)
    )
    return f"[{head}, ", f", {json.dumps(version)}]"


def offer_id(material: tuple[str, str], pinned: datetime) -> str:
    """Deterministic: the same offer to the same account state in the same second has one id."""
    head, tail = material
    return "off_" + hashlib.sha256(f"{head}{unix(pinned)}{tail}".encode()).hexdigest()[:24]


def sign_offer(
    signer: TokenSigner,
    account: AccountState,
    oid: str,
    planned: PlannedOffer,
    quote: Quote,
    expires_at: datetime,
) -> str:
    return signer.sign(
        OFFER_PREFIX,
        {
            "acc": account.id,
            "oid": oid,
            "eng": planned.candidate.engine.value,
            "tgt": planned.target,
            "due": quote.amount_due.minor,
            "cur": quote.amount_due.currency,
            "pd": unix(quote.proration_date),
            "cv": quote.catalog_version,
            "av": account.version,
            "sig": planned.signal_ids,
            "exp": unix(expires_at),
        },
    )


def plan_offers(catalog: Catalog, inputs: OfferInputs) -> OfferPlan:
    """Rank the account's candidates: strongest signal first, then the smallest MRR step."""
    account, signals = inputs.account, inputs.signals
    current_mrr = plan_mrr(catalog, account.plan).minor
    prepared: list[tuple[OfferCandidate, int | None]] = []
    changes: dict[int, PreparedChange] = {}
    for candidate in candidates(catalog, account.plan, inputs.usage, signals):
        if candidate.target is None:
            prepared.append((candidate, None))
            continue
        try:
            change = prepare_for_account(catalog, account, candidate.target)
        except DomainError:
            continue  # not sellable (path closed, account not billable): never show it
        changes[id(candidate)] = change
        prepared.append((candidate, change.new_mrr.minor - current_mrr))
    days = signals.days_since_activation
    window = catalog.signals.post_activation_window_days
    shared = {
        "account_id": account.id,
        "currency": account.currency,
        "days_since_activation": days,
        "in_activation_window": days is not None and 0 <= days < window,
        "catalog_version": catalog.version,
    }
    planned = []
    for candidate, _step in rank(prepared, signals.in_window):
        target = (
            plan_to_json(candidate.target) if candidate.target else {"tier": candidate.target_tier}
        )
        planned.append(
            PlannedOffer(
                candidate,
                changes.get(id(candidate)),
                candidate.score(signals.in_window),
                target,
                list(candidate.signal_ids),
                offer_id_material(account, candidate, target, catalog.version),
                ImpressionStatic.of(
                    {
                        **shared,
                        "engine": candidate.engine.value,
                        "target": target,
                        "reason_codes": list(candidate.reasons),
                        "signal_ids": list(candidate.signal_ids),
                    }
                ),
            )
        )
    return OfferPlan(account, inputs.billed, signals.in_window, tuple(planned))


def price_offers(
    catalog: Catalog,
    plan: OfferPlan,
    now: datetime,
    signer: TokenSigner,
    gateway: BillingGateway | None,
) -> AccountOffers:
    """The planned offers priced at `now` and signed (`gateway` None: the local engine is the
    price authority)."""
    account = plan.account
    offers: list[PricedOffer] = []
    for planned in plan.offers:
        candidate = planned.candidate
        quote: Quote | None = None
        if planned.change is not None:
            try:
                quote = authoritative_quote(
                    gateway,
                    account,
                    price_for_account(planned.change, account, plan.billed, now),
                )
            except DomainError:
                continue  # not sellable right now (period over): never show it
        pinned = quote.proration_date if quote else now.replace(microsecond=0)
        expires_at = pinned + OFFER_TTL
        if quote is not None:
            expires_at = min(expires_at, quote.period.end)
        oid = offer_id(planned.id_material, pinned)
        token = (
            sign_offer(signer, account, oid, planned, quote, expires_at)
            if quote is not None
            else None
        )
        offers.append(PricedOffer(oid, candidate, quote, planned.score, expires_at, token))
    return AccountOffers(account.id, plan.in_window, tuple(offers))


def compute_offers(
    catalog: Catalog,
    inputs: OfferInputs,
    now: datetime,
    signer: TokenSigner,
    gateway: BillingGateway | None,
) -> AccountOffers:
    """The account's offers, best first, each priced at `now` and signed."""
    return price_offers(catalog, plan_offers(catalog, inputs), now, signer, gateway)


def impression_rows(plan: OfferPlan, offers: AccountOffers, now: datetime) -> list[Impression]:
    """One offer_impressions row per offer shown, for the funnel."""
    static = {id(planned.candidate): planned.impression for planned in plan.offers}
    return [
        Impression(
            static[id(offer.candidate)],
            offer.id,
            offer.quote.amount_due.minor if offer.quote else None,
            now,
        )
        for offer in offers.offers
    ]


def is_sales_assisted(offer: PricedOffer) -> bool:
    return offer.candidate.engine is OfferEngine.sales_assisted
