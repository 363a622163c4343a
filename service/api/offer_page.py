"""The upgrade-offers body of a cached offer plan, rendered once around what moves by the second.

`offer_schemas.offers_payload` defines the body. Of a plan's offers, everything but the ids,
expiries and tokens, and the quotes' proration dates, lines and amounts due, is the same on
every page load: `offers_page` dumps the payload once with a marker in each place that moves
and cuts the JSON text there; `render` fills the cuts for the offers priced at one moment
(services.offers.show_offers). The FastAPI route and the page-load path both answer with it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import NamedTuple, cast

from service.api.offer_schemas import dump_json, line_payload, offer_payload, offers_payload
from service.domain.money import Money
from service.domain.proration import ProrationLine
from service.domain.quote_terms import QuoteTerms, proration_moment
from service.domain.quotes import Quote
from service.services.offers import (
    AccountOffers,
    OfferPlan,
    PlannedOffer,
    PricedOffer,
    ShownOffer,
)
from service.services.tokens import from_unix

# What `render` fills, in the order it passes the values (each as its JSON text).
OFFER_SLOTS = (
    "id",
    "expires_at",
    "offer_token",
    "proration_date",
    "lines",
    "amount_due",
    "effective_at",
    "next_invoice_date",
)
LINE_SLOTS = ("amount", "period_start", "period_end")
_NONCE = secrets.token_hex(8)  # a marker no catalog or account text can contain


def _marker(slot: str) -> str:
    return f"\x00{slot}:{_NONCE}"


def _mark(payload: dict[str, object], path: Sequence[str], slot: str) -> None:
    """Put the marker of `slot` at `path` in the payload (fresh dicts, built for this)."""
    *parents, last = path
    for key in parents:
        payload = cast(dict[str, object], payload[key])
    payload[last] = _marker(slot)


class Cut(NamedTuple):
    """A JSON text with some values cut out: `format % pick(values)` puts them back."""

    format: bytes
    pick: Callable[[Sequence[bytes]], bytes | tuple[bytes, ...]]


# Every marker as dump_json writes it, its slot captured: one split finds them all.
_MARKED = re.compile(
    re.escape(dump_json(_marker("SLOT"))).replace(b"SLOT", b"([a-z_]+)"),
)


def cut(payload: object, slots: Sequence[str], order: Sequence[str]) -> Cut:
    """`payload` dumped and cut at the `_marker` of each of `slots`; the values to put back
    come in `order`."""
    pieces = _MARKED.split(dump_json(payload).replace(b"%", b"%%"))
    found = [slot.decode() for slot in pieces[1::2]]  # in the text's order
    for slot in slots:
        if found.count(slot) != 1:
            raise ValueError(f"slot {slot!r} is not in the payload exactly once")
    if len(found) != len(slots):
        raise ValueError(f"the payload has markers of other slots than {list(slots)}")
    return Cut(b"%s".join(pieces[0::2]), itemgetter(*(order.index(slot) for slot in found)))


@dataclass(frozen=True, slots=True)
class OfferCuts:
    offer: Cut
    lines: tuple[Cut, ...]  # per QuoteTerms.lines


@dataclass(frozen=True, slots=True)
class OffersPage:
    """An offer plan with its body rendered but for what moves (see the module docstring)."""

    plan: OfferPlan
    head: bytes  # up to the offers' list, included
    tail: bytes
    offers: tuple[OfferCuts | None, ...]  # per plan.offers; None: one never shown
    period_end: datetime  # the plan's: the cache drops the page then


def offers_page(plan: OfferPlan) -> OffersPage:
    account = plan.account
    payload = offers_payload(AccountOffers(account.id, plan.in_window, ()))
    payload["offers"] = _marker("offers")
    head, tail = dump_json(payload).split(dump_json(_marker("offers")))
    offers = tuple(_offer_cuts(plan, planned) for planned in plan.offers)
    return OffersPage(plan, head + b"[", b"]" + tail, offers, plan.period_end)


def _offer_cuts(plan: OfferPlan, planned: PlannedOffer) -> OfferCuts | None:
    """The offer's payload as the general engine prices it at some moment, cut where it moves."""
    if planned.change is None:  # sales-assisted
        sample = PricedOffer("", planned.candidate, None, planned.score, plan.period_end, None)
        payload = offer_payload(sample)
        for slot in ("id", "expires_at"):
            _mark(payload, [slot], slot)
        return OfferCuts(cut(payload, OFFER_SLOTS[:2], OFFER_SLOTS), ())
    terms = planned.terms
    if terms is None:
        return None  # priced, it is refused at every moment
    period = plan.account.period
    sample_date = max(period.start, from_unix(terms.first_second))
    if not terms.covers(proration_moment(sample_date)):
        return None  # refused at every moment it could be shown
    # Every value of the quote that depends on the moment is cut out below: a quote with the
    # change's fixed values (as price_change gives them) is all the payload needs.
    change = planned.change
    quote = Quote(
        current=change.current,
        target=change.target,
        kind=change.kind,
        timing=change.timing,
        proration_date=sample_date,
        lines=(),
        amount_due=Money(0, terms.currency),
        new_recurring=terms.new_recurring,
        new_mrr=change.new_mrr,
        period=period,
        effective_at=sample_date,
        catalog_version=change.catalog_version,
        new_billed=(),
    )
    payload = offer_payload(
        PricedOffer("", planned.candidate, quote, planned.score, sample_date, "")
    )
    for slot in ("id", "expires_at", "offer_token"):
        _mark(payload, [slot], slot)
    for slot in ("proration_date", "lines", "effective_at", "next_invoice_date"):
        _mark(payload, ["quote", slot], slot)
    _mark(payload, ["quote", "amount_due_now", "amount_minor"], "amount_due")
    return OfferCuts(cut(payload, OFFER_SLOTS, OFFER_SLOTS), _line_cuts(terms))


def _line_cuts(terms: QuoteTerms) -> tuple[Cut, ...]:
    cuts = []
    period = terms.period
    for line in terms.lines:
        amount = Money(0, terms.currency)
        sample = ProrationLine(
            line.key, line.description, amount, period, line.proration, line.quantity
        )
        payload = line_payload(sample)
        _mark(payload, ["amount", "amount_minor"], "amount")
        _mark(payload, ["period_start"], "period_start")
        # A proration line ends with the period; a full-period charge with the new period.
        slots = LINE_SLOTS[:2] if line.proration else LINE_SLOTS
        if not line.proration:
            _mark(payload, ["period_end"], "period_end")
        cuts.append(cut(payload, slots, LINE_SLOTS))
    return tuple(cuts)


def render(page: OffersPage, shown: list[ShownOffer]) -> bytes:
    """The body for the offers priced at one moment: `dump_json(offers_payload(...))` of the
    same offers priced by `price_offers`, byte for byte."""
    # The offers of one moment share most of their instants (the same objects): dump each once.
    instants: dict[int, bytes] = {}

    def instant(moment: datetime) -> bytes:
        text = instants.get(id(moment))
        if text is None:
            text = instants[id(moment)] = dump_json(moment)
        return text

    parts = []
    for offer in shown:
        cuts = page.offers[offer.index]
        assert cuts is not None
        offer_cut, quote = cuts.offer, offer.quote
        if quote is None:
            values: tuple[bytes, ...] = (dump_json(offer.id), instant(offer.expires_at))
            parts.append(offer_cut.format % offer_cut.pick(values))
            continue
        start, end = instant(quote.lines_start), instant(quote.period_end)
        lines = b",".join(
            [
                line.format % line.pick((b"%d" % amount, start, end))
                for line, amount in zip(cuts.lines, quote.amounts, strict=True)
                if amount
            ]
        )
        values = (
            dump_json(offer.id),
            instant(offer.expires_at),
            dump_json(offer.token),
            instant(quote.proration_date),
            b"[%s]" % lines,
            b"%d" % quote.amount_due,
            instant(quote.effective_at),
            instant(quote.next_invoice_at),
        )
        parts.append(offer_cut.format % offer_cut.pick(values))
    return page.head + b",".join(parts) + page.tail
