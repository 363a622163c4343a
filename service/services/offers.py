"""Upgrade offers for an account: ranked, priced with an exact quote, signed, and recorded."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.account_reading import read_account
from service.adapters.db import connection_read
from service.adapters.usage_repository import usage_account
from service.domain.accounts import plan_to_json
from service.domain.catalog import Catalog
from service.domain.errors import DomainError
from service.domain.offers import (
    OfferCandidate,
    OfferEngine,
    candidates,
    inputs_change_at,
    rank,
)
from service.domain.periods import calendar_month
from service.domain.proration import BilledLine
from service.domain.quote_terms import QuoteAt, QuoteTerms, proration_moment, quote_terms
from service.domain.quotes import PreparedChange, Quote, plan_mrr
from service.domain.thresholds import SignalSummary
from service.domain.usage import (
    LIFETIME_START,
    FeatureUsage,
    build_snapshot,
    current_period_starts,
)
from service.services.account_state import AccountState, state_of
from service.services.accounts import unknown_account
from service.services.billing import billed_of
from service.services.impressions import Impression, ImpressionStatic
from service.services.quotes import (
    pinned_proration_date,
    prepare_for_account,
    price_for_account,
)
from service.services.signals import SUMMARY_CROSSINGS, summary_of
from service.services.tokens import OFFER_PREFIX, ClaimsTemplate, TokenSigner, unix

if TYPE_CHECKING:
    from hashlib import _Hash

OFFER_TTL = timedelta(minutes=15)
# The claims of an offer token that depend on the moment it is priced at (see sign_offer).
VARYING_CLAIMS = ("due", "exp", "oid", "pd")


@dataclass(frozen=True, slots=True)
class OfferInputs:
    """Everything offers are computed from: immutable, so it can be cached between requests."""

    account: AccountState
    billed: tuple[BilledLine, ...]
    usage: Mapping[str, FeatureUsage]
    signals: SignalSummary
    # The first moment the inputs change by time alone (domain.offers.inputs_change_at; None:
    # never).
    valid_until: datetime | None = None
    # The account's stamp in the offers read model when they were read (None: no row yet).
    page_stamp: int | None = None


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


def read_offer_inputs(
    connection: Connection, catalog: Catalog, account_id: str, now: datetime
) -> OfferInputs:
    """The account's offer inputs at `now` (NotFound for an unknown account), in one statement
    (adapters.account_reading): the cache miss's one round trip. The same inputs as
    services.usage.usage_snapshot, services.billing.billed_lines and
    services.signals.signal_summary give, which take a statement each."""
    # The counters of a current period: lifetime, the calendar month, and the billing period
    # (the account's own current one, which the statement adds).
    starts = {LIFETIME_START, calendar_month(now).start}
    reading = read_account(connection, account_id, starts, SUMMARY_CROSSINGS)
    if reading is None:
        raise unknown_account(account_id)
    usage = usage_account(reading.account)
    needed = current_period_starts(catalog, usage.cycle, now)
    if not needed <= starts | {reading.account.current_period_start}:
        # Now is outside the account's current period (its renewal is due): a billing period
        # of its own, read again with that period's start.
        reading = read_account(connection, account_id, needed, SUMMARY_CROSSINGS)
        if reading is None:
            raise unknown_account(account_id)
        usage = usage_account(reading.account)
    state = state_of(reading.account)
    snapshot = build_snapshot(catalog, usage, reading.counters, now)
    signals = summary_of(
        catalog, reading.account, snapshot, reading.milestones, reading.crossings, now
    )
    return OfferInputs(
        account=state,
        billed=billed_of(catalog, state, reading.lines),
        usage=snapshot.features,
        signals=signals,
        valid_until=inputs_change_at(
            (feature.period for feature in snapshot.features.values()), signals.activated_at, now
        ),
        page_stamp=reading.page_stamp,
    )


def read_offer_plan(
    factory: sessionmaker[Session],
    catalog: Catalog,
    signer: TokenSigner,
    account_id: str,
    now: datetime,
    *,
    current_only: bool,
) -> OfferPlan | None:
    """A cache miss: the account's inputs read without a transaction around them (see
    db.connection_read), then ranked and prepared. `current_only`: None for an account whose
    billing period has ended (it is to be renewed first)."""
    inputs = connection_read(
        factory, lambda connection: read_offer_inputs(connection, catalog, account_id, now)
    )
    if current_only and inputs.account.period.end <= inputs.account.billing_time(now):
        return None
    return plan_offers(catalog, inputs, signer)


class OfferIdMaterial:
    """What an offer id hashes, around the pinned second (see offer_id_material); the part
    before the second is hashed once, and each id goes on from a copy of that state."""

    __slots__ = ("_hashed", "_head", "_tail")

    def __init__(self, head: str, tail: str) -> None:
        self._head = head
        self._hashed: _Hash = hashlib.sha256(head.encode())
        self._tail = tail.encode()

    def __reduce__(self) -> tuple[Any, ...]:
        return (OfferIdMaterial, (self._head, self._tail.decode()))

    def id_at(self, pinned_unix: int) -> str:
        digest = self._hashed.copy()
        digest.update(b"%d%s" % (pinned_unix, self._tail))
        return "off_" + digest.hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class PlannedOffer:
    """A ranked candidate with its change prepared (None: nothing to price, talk to sales)."""

    candidate: OfferCandidate
    change: PreparedChange | None
    score: int
    target: Mapping[str, Any]  # as JSON: the plan, or {"tier": ...} for sales-assisted
    signal_ids: list[str]
    id_material: OfferIdMaterial
    impression: ImpressionStatic  # the columns of its impressions that never vary
    # The change priced in the plan's period against its billed lines, in integers (None: no
    # change, or one prorate refuses at every moment), and its offer token's fixed claims.
    terms: QuoteTerms | None
    claims: ClaimsTemplate | None


@dataclass(frozen=True, slots=True)
class OfferPlan:
    """An account's offers, ranked, with everything that does not depend on the moment they are
    priced at: built from OfferInputs once per cache entry, priced on every page load. It keeps
    only what pricing needs (not the usage and signals behind the candidates): it is cached."""

    account: AccountState
    billed: tuple[BilledLine, ...]
    in_window: bool
    offers: tuple[PlannedOffer, ...]
    # When the catalog version the plan was made with stops being the one in force (None: no
    # later version): its step ups are priced at that version, so the plan is not kept past it.
    catalog_until: datetime | None = None
    # When its inputs change by time alone (OfferInputs.valid_until; None: never).
    inputs_until: datetime | None = None
    page_stamp: int | None = None  # OfferInputs.page_stamp

    @property
    def period_end(self) -> datetime:
        """Until when the plan may be cached: its period's end, or, on a Stripe test clock,
        until the clock moves (which changes the account, so every cache drops the plan); never
        past the moment a later catalog version takes over, nor past the moment its inputs
        change by time alone (a usage period ends, a day since activation passes)."""
        if self.account.frozen_time is not None:
            end = datetime.max.replace(tzinfo=UTC)
        else:
            end = self.account.period.end
        for bound in (self.catalog_until, self.inputs_until):
            if bound is not None and bound < end:
                end = bound
        return end


def offer_id_material(
    account: AccountState, candidate: OfferCandidate, target: Mapping[str, Any], version: str
) -> OfferIdMaterial:
    """What an offer id hashes, around the pinned second: the JSON text of
    [account id, account version, engine, target, pinned unix second, catalog version]."""
    head = ", ".join(
        json.dumps(part, sort_keys=True)
        for part in (account.id, account.version, candidate.engine.value, target)
    )
    return OfferIdMaterial(f"[{head}, ", f", {json.dumps(version)}]")


def offer_id(material: OfferIdMaterial, pinned: datetime) -> str:
    """Deterministic: the same offer to the same account state in the same second has one id."""
    return material.id_at(unix(pinned))


def sign_offer(planned: PlannedOffer, oid: str, quote: Quote, expires_at: datetime) -> str:
    """The offer token of a priced offer: the plan's claims template (see planned_offer) with
    the claims that depend on the moment (VARYING_CLAIMS, in their order)."""
    # A quote exists only where the proration terms price the change, so the template does.
    assert planned.claims is not None
    return planned.claims.sign(
        quote.amount_due.minor, unix(expires_at), oid, unix(quote.proration_date)
    )


def plan_offers(catalog: Catalog, inputs: OfferInputs, signer: TokenSigner) -> OfferPlan:
    """Rank the account's candidates: strongest signal first, then the smallest MRR step; each
    change is also reduced to the integer terms that price it in the account's period."""
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
    planned = tuple(
        planned_offer(catalog, inputs, candidate, changes.get(id(candidate)), signer)
        for candidate, _step in rank(prepared, signals.in_window)
    )
    return OfferPlan(
        account,
        inputs.billed,
        signals.in_window,
        planned,
        catalog.superseded_at,
        inputs.valid_until,
        inputs.page_stamp,
    )


def planned_offer(
    catalog: Catalog,
    inputs: OfferInputs,
    candidate: OfferCandidate,
    change: PreparedChange | None,
    signer: TokenSigner,
) -> PlannedOffer:
    """A candidate with everything that does not depend on the moment it is priced at."""
    account, signals = inputs.account, inputs.signals
    target = plan_to_json(candidate.target) if candidate.target else {"tier": candidate.target_tier}
    signal_ids = list(candidate.signal_ids)
    terms = None if change is None else quote_terms(change, account.period, inputs.billed)
    claims = None
    if change is not None and terms is not None:
        fixed = {
            "acc": account.id,
            "eng": candidate.engine.value,
            "tgt": target,
            "cur": terms.currency,
            "cv": change.catalog_version,
            "av": account.version,
            "sig": signal_ids,
        }
        claims = signer.template(OFFER_PREFIX, fixed, VARYING_CLAIMS)
    days = signals.days_since_activation
    impression = {
        "account_id": account.id,
        "currency": account.currency,
        "days_since_activation": days,
        "in_activation_window": (
            days is not None and 0 <= days < catalog.signals.post_activation_window_days
        ),
        "catalog_version": catalog.version,
        "engine": candidate.engine.value,
        "target": target,
        "reason_codes": list(candidate.reasons),
        "signal_ids": list(candidate.signal_ids),
    }
    return PlannedOffer(
        candidate,
        change,
        candidate.score(signals.in_window),
        target,
        signal_ids,
        offer_id_material(account, candidate, target, catalog.version),
        ImpressionStatic.of(impression),
        terms,
        claims,
    )


def clock_shift(account: AccountState, now: datetime) -> timedelta:
    """How far the service's clock is ahead of the account's billing time, by whole seconds
    (zero unless the subscription lives on a Stripe test clock): an offer pinned at a moment
    of billing time expires OFFER_TTL later by the service's clock, which checks its token."""
    if account.frozen_time is None:
        return timedelta(0)
    return now.replace(microsecond=0) - account.frozen_time.replace(microsecond=0)


def price_offers(plan: OfferPlan, now: datetime) -> AccountOffers:
    """The planned offers priced at `now` by the local engine (the general path: `show_offers`
    gives the same offers in a few integer operations each) and signed with the plan's token
    templates."""
    account = plan.account
    offers: list[PricedOffer] = []
    for planned in plan.offers:
        candidate = planned.candidate
        quote: Quote | None = None
        if planned.change is not None:
            try:
                quote = price_for_account(planned.change, account, plan.billed, now)
            except DomainError:
                continue  # not sellable right now (period over): never show it
        pinned = quote.proration_date if quote else now.replace(microsecond=0)
        expires_at = pinned + OFFER_TTL
        if quote is not None:
            expires_at = min(expires_at, quote.period.end) + clock_shift(account, now)
        oid = offer_id(planned.id_material, pinned)
        token = None if quote is None else sign_offer(planned, oid, quote, expires_at)
        offers.append(PricedOffer(oid, candidate, quote, planned.score, expires_at, token))
    return AccountOffers(account.id, plan.in_window, tuple(offers))


class ShownOffer(NamedTuple):
    """A planned offer priced at one moment by the local engine: what a page shows of it."""

    index: int  # in OfferPlan.offers
    id: str
    quote: QuoteAt | None  # None for a sales-assisted offer
    expires_at: datetime
    token: str | None


def show_offers(plan: OfferPlan, now: datetime) -> list[ShownOffer]:
    """`price_offers` with the local engine as the price authority, from the terms prepared
    with the plan: the same offers, ids, amounts and tokens, in a few integer operations each
    and without building quotes (the page-load path; see domain.quote_terms)."""
    account = plan.account
    billing_now = account.billing_time(now)  # a Stripe test clock's frozen time, or now
    sellable = billing_now < account.period.end  # else no change is until it is renewed
    moment = proration_moment(pinned_proration_date(billing_now, None, account.period))
    pinned_unix = unix(moment.proration_date)
    quoted_expiry = moment.proration_date + OFFER_TTL
    shift = clock_shift(account, now)
    shown: list[ShownOffer] = []
    for index, planned in enumerate(plan.offers):
        terms, claims = planned.terms, planned.claims
        if planned.change is None:  # sales-assisted: nothing to price
            pinned = now.replace(microsecond=0)
            oid = planned.id_material.id_at(unix(pinned))
            shown.append(ShownOffer(index, oid, None, pinned + OFFER_TTL, None))
            continue
        if sellable and terms is not None and claims is not None and terms.covers(moment):
            quote = terms.at(moment)
            expires_at = min(quoted_expiry, quote.period_end) + shift
            oid = planned.id_material.id_at(pinned_unix)
            token = claims.sign(quote.amount_due, unix(expires_at), oid, pinned_unix)
            shown.append(ShownOffer(index, oid, quote, expires_at, token))
            continue
        # A moment the terms do not price: the general engine refuses it and says why.
        try:
            price_for_account(planned.change, account, plan.billed, now)
        except DomainError:
            continue  # not sellable right now (period over): never show it
        raise AssertionError("the quote terms refused a moment the proration engine prices")
    return shown


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


def shown_impressions(plan: OfferPlan, shown: list[ShownOffer], now: datetime) -> list[Impression]:
    """`impression_rows` for offers priced by `show_offers`."""
    offers = plan.offers
    return [
        Impression(
            offers[offer.index].impression,
            offer.id,
            None if offer.quote is None else offer.quote.amount_due,
            now,
        )
        for offer in shown
    ]


def is_sales_assisted(offer: PricedOffer) -> bool:
    return offer.candidate.engine is OfferEngine.sales_assisted
