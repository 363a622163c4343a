"""Retention math: period flows and reports (NRR, GRR, quick ratio), the roll-forward and each
movement's cohort share."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from types import MappingProxyType
from typing import Final

from service.domain.ledger.movements import Engine, LedgerEntryDraft, Movement, MovementKind
from service.domain.ledger.values import require_int, require_non_negative, require_text
from service.domain.money import validate_currency
from service.domain.periods import Period

MovementLike = Movement | LedgerEntryDraft
AccountKey = tuple[str, str]  # (account_id, currency)

_RATIO_QUANTUM: Final = Decimal("0.0001")


def ratio(numerator: int, denominator: int) -> Decimal | None:
    """numerator / denominator to 4 places, half to even; None when the denominator is 0."""
    if denominator == 0:
        return None
    # A local context so a caller's global decimal settings can never change a report.
    with localcontext() as context:
        context.prec = 50
        quotient = Decimal(numerator) / Decimal(denominator)
        return quotient.quantize(_RATIO_QUANTUM, rounding=ROUND_HALF_EVEN)


def _engine_amounts(amounts: Mapping[Engine, int] | Mapping[str, int]) -> Mapping[Engine, int]:
    totals = dict.fromkeys(Engine, 0)
    for engine, amount in amounts.items():
        totals[Engine(engine)] += require_non_negative(amount, f"expansion {engine}")
    return MappingProxyType(totals)


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodFlows:
    """The summed movements of one (period, currency): what SQL aggregates and reports consume.

    All amounts are non-negative minor units; contraction and churn are magnitudes. The cohort is
    the accounts with MRR > 0 at the period start; `cohort_capped_loss` is, summed over cohort
    accounts, min(account starting MRR, account contraction + churn).
    """

    period: Period
    currency: str
    starting_mrr: int
    new: int
    expansion_by_engine: Mapping[Engine, int]
    contraction: int
    churn: int
    reactivation: int
    cohort_expansion: int
    cohort_contraction: int
    cohort_churn: int
    cohort_capped_loss: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", validate_currency(self.currency))
        object.__setattr__(self, "expansion_by_engine", _engine_amounts(self.expansion_by_engine))
        for name in (
            "starting_mrr",
            "new",
            "contraction",
            "churn",
            "reactivation",
            "cohort_expansion",
            "cohort_contraction",
            "cohort_churn",
            "cohort_capped_loss",
        ):
            require_non_negative(getattr(self, name), name)
        if (
            self.cohort_expansion > sum(self.expansion_by_engine.values())
            or self.cohort_contraction > self.contraction
            or self.cohort_churn > self.churn
        ):
            raise ValueError("cohort amounts cannot exceed the period totals")
        if self.cohort_capped_loss > min(
            self.starting_mrr, self.cohort_contraction + self.cohort_churn
        ):
            raise ValueError("cohort_capped_loss exceeds starting MRR or cohort losses")


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodReport:
    """MRR movements and retention ratios for one (period, currency); never mixes currencies."""

    period: Period
    currency: str
    starting_mrr: int
    new: int
    expansion_by_engine: Mapping[Engine, int]
    contraction: int
    churn: int
    reactivation: int
    ending_mrr: int
    retained_mrr: int
    gross_retained_mrr: int
    nrr: Decimal | None
    grr: Decimal | None
    quick_ratio: Decimal | None
    expansion_share: Decimal | None

    @property
    def expansion(self) -> int:
        return sum(self.expansion_by_engine.values())


def report_from_flows(flows: PeriodFlows) -> PeriodReport:
    """Derive ending MRR and the ratios from one period's flows.

    - NRR = (start + cohort expansion - cohort contraction - cohort churn) / start; new and
      reactivation MRR never enter it, not even a cohort account's own return after churning,
      and a cohort account loses at most its starting MRR (cohort_share), so NRR >= 0.
    - GRR = (start - cohort capped loss) / start, so 0 <= GRR <= 1: an account cannot lose more
      of the starting MRR than it brought into the period.
    - quick ratio = (new + expansion + reactivation) / (contraction + churn), all accounts.
    - expansion share = expansion / (new + expansion + reactivation), all accounts: the part of
      the period's added MRR that came from existing customers growing.
    Ratios are None when their denominator is 0.
    """
    expansion = sum(flows.expansion_by_engine.values())
    gained = flows.new + expansion + flows.reactivation
    lost = flows.contraction + flows.churn
    retained = (
        flows.starting_mrr + flows.cohort_expansion - flows.cohort_contraction - flows.cohort_churn
    )
    gross_retained = flows.starting_mrr - flows.cohort_capped_loss
    return PeriodReport(
        period=flows.period,
        currency=flows.currency,
        starting_mrr=flows.starting_mrr,
        new=flows.new,
        expansion_by_engine=flows.expansion_by_engine,
        contraction=flows.contraction,
        churn=flows.churn,
        reactivation=flows.reactivation,
        ending_mrr=flows.starting_mrr + gained - lost,
        retained_mrr=retained,
        gross_retained_mrr=gross_retained,
        nrr=ratio(retained, flows.starting_mrr),
        grr=ratio(gross_retained, flows.starting_mrr),
        quick_ratio=ratio(gained, lost),
        expansion_share=ratio(expansion, gained),
    )


@dataclass(slots=True)
class _Tally:
    starting_mrr: int = 0
    new: int = 0
    expansion: dict[Engine, int] = field(default_factory=lambda: dict.fromkeys(Engine, 0))
    contraction: int = 0
    churn: int = 0
    reactivation: int = 0
    cohort_expansion: int = 0
    cohort_contraction: int = 0
    cohort_churn: int = 0
    cohort_capped_loss: int = 0

    def freeze(self, period: Period, currency: str) -> PeriodFlows:
        return PeriodFlows(
            period=period,
            currency=currency,
            starting_mrr=self.starting_mrr,
            new=self.new,
            expansion_by_engine=self.expansion,
            contraction=self.contraction,
            churn=self.churn,
            reactivation=self.reactivation,
            cohort_expansion=self.cohort_expansion,
            cohort_contraction=self.cohort_contraction,
            cohort_churn=self.cohort_churn,
            cohort_capped_loss=self.cohort_capped_loss,
        )


def _opening_balances(starting_mrr: Mapping[AccountKey, int]) -> dict[AccountKey, int]:
    balances: dict[AccountKey, int] = {}
    for (account_id, currency), mrr in starting_mrr.items():
        key = (require_text(account_id, "account_id"), validate_currency(currency))
        if key in balances:
            raise ValueError(f"starting MRR given twice for {key}")
        if require_non_negative(mrr, f"starting MRR of {key}"):
            balances[key] = mrr
    return balances


def _time_ordered(movements: Iterable[MovementLike]) -> list[MovementLike]:
    # sorted() is stable: movements at the same instant keep the order given (ledger order).
    return sorted(movements, key=lambda movement: movement.occurred_at)


def _roll_period(
    movements: Sequence[MovementLike], opening: Mapping[AccountKey, int], period: Period
) -> tuple[list[PeriodFlows], dict[AccountKey, int]]:
    tallies: dict[str, _Tally] = {}
    for (_, currency), mrr in opening.items():
        tallies.setdefault(currency, _Tally()).starting_mrr += mrr
    by_account: dict[AccountKey, list[MovementLike]] = {}
    for movement in movements:
        if not period.contains(movement.occurred_at):
            raise ValueError(f"movement at {movement.occurred_at} is outside {period}")
        by_account.setdefault((movement.account_id, movement.currency), []).append(movement)

    closing = dict(opening)
    for key, account_movements in by_account.items():
        tally = tallies.setdefault(key[1], _Tally())
        start = opening.get(key, 0)
        current = start
        losses = net = 0
        for index, movement in enumerate(account_movements):
            # A gap means a missing or misordered ledger row; any report built on it would lie.
            if movement.mrr_before != current:
                raise ValueError(
                    f"{key}: movement starts at {movement.mrr_before} but MRR was {current}"
                )
            kind = movement.kind
            amount = abs(movement.delta)
            cohort, capped = cohort_share(
                movement.delta, kind=kind, opening=start, loss_before=losses, net_before=net
            )
            tally.cohort_capped_loss += capped
            if kind is MovementKind.NEW:
                if index > 0:
                    raise ValueError(f"{key}: a return after churn is a reactivation, not new")
                tally.new += amount
            elif kind is MovementKind.REACTIVATION:
                tally.reactivation += amount
            elif kind is MovementKind.EXPANSION:
                assert movement.engine is not None  # guaranteed by the movement's own checks
                tally.expansion[movement.engine] += amount
                tally.cohort_expansion += cohort
            elif kind is MovementKind.CONTRACTION:
                tally.contraction += amount
                tally.cohort_contraction -= cohort
            else:
                tally.churn += amount
                tally.cohort_churn -= cohort
            if movement.delta < 0:
                losses += amount
            if counts_for_cohort(kind):
                net += movement.delta
            current = movement.mrr_after
        if current:
            closing[key] = current
        else:
            closing.pop(key, None)

    flows = [tallies[currency].freeze(period, currency) for currency in sorted(tallies)]
    return flows, closing


def period_flows(
    movements: Iterable[MovementLike],
    starting_mrr: Mapping[AccountKey, int],
    period: Period,
) -> list[PeriodFlows]:
    """Sum one period's movements into flows, one per currency, sorted by currency.

    `starting_mrr` maps (account_id, currency) to the MRR the account had at the period start
    (its last mrr_after before the period) and must include accounts without movements, since
    they are part of the NRR base. Every movement must fall inside the period, and each
    account's movements must chain (mrr_before equals the previous mrr_after), else ValueError.
    Movements are taken in occurred_at order; ties keep the given (ledger) order.
    """
    flows, _ = _roll_period(_time_ordered(movements), _opening_balances(starting_mrr), period)
    return flows


def period_reports(
    movements: Iterable[MovementLike],
    starting_mrr: Mapping[AccountKey, int],
    period: Period,
) -> list[PeriodReport]:
    """The report of one period per currency; see period_flows for the inputs."""
    return [report_from_flows(flows) for flows in period_flows(movements, starting_mrr, period)]


def rollforward_reports(
    movements: Iterable[MovementLike],
    opening_mrr: Mapping[AccountKey, int],
    periods: Sequence[Period],
) -> list[PeriodReport]:
    """Reports for consecutive periods, each period starting from the previous one's end.

    `opening_mrr` is the MRR per (account, currency) at the first period's start; movements must
    fall inside the periods, which must be contiguous. Sorted by period, then currency.
    """
    if not periods:
        return []
    for earlier, later in itertools.pairwise(periods):
        if earlier.end != later.start:
            raise ValueError("periods must be contiguous")
    starts = [period.start for period in periods]
    buckets: list[list[MovementLike]] = [[] for _ in periods]
    for movement in _time_ordered(movements):
        index = bisect.bisect_right(starts, movement.occurred_at) - 1
        if index < 0 or movement.occurred_at >= periods[-1].end:
            raise ValueError(f"movement at {movement.occurred_at} is outside the periods")
        buckets[index].append(movement)

    reports: list[PeriodReport] = []
    balances = _opening_balances(opening_mrr)
    for period, bucket in zip(periods, buckets, strict=True):
        flows, balances = _roll_period(bucket, balances, period)
        reports.extend(report_from_flows(item) for item in flows)
    return reports


def cohort_share(
    delta: int, *, kind: MovementKind, opening: int, loss_before: int, net_before: int
) -> tuple[int, int]:
    """What one movement adds to its period's cohort sums: (cohort delta, capped loss).

    `opening` is the account's MRR (in the movement's currency) at the period start,
    `loss_before` the losses it booked earlier in the same period and `net_before` the sum of
    its earlier cohort movements there (expansion, contraction, churn: not new nor
    reactivation, whose MRR was not in the cohort). Only accounts paying at the period start are
    in the cohort, and a cohort account can lose at most its opening MRR, for NRR as for GRR:
    its cohort deltas add up to max(-opening, net), its capped losses to min(opening, losses),
    the same sums _roll_period makes per account. So NRR >= 0 and 0 <= GRR <= 1 for any history
    (churned, reactivated and churned again within one period loses the opening MRR once).
    """
    if require_non_negative(opening, "opening") == 0:
        return 0, 0
    loss_before = require_non_negative(loss_before, "loss_before")
    delta = require_int(delta, "delta")
    loss = -delta if delta < 0 else 0
    capped_loss = min(opening, loss_before + loss) - min(opening, loss_before)
    if not counts_for_cohort(kind):
        return 0, capped_loss
    net_before = require_int(net_before, "net_before")
    return max(-opening, net_before + delta) - max(-opening, net_before), capped_loss


def counts_for_cohort(kind: MovementKind) -> bool:
    """Whether a movement of this kind moves the cohort's MRR (new and reactivated MRR never
    enter NRR or GRR)."""
    return kind not in (MovementKind.NEW, MovementKind.REACTIVATION)
