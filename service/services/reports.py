"""NRR / GRR and the offer funnel: SQL sums the ledger, domain.ledger turns sums into ratios."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from service.adapters.ledger_report_sql import (
    PeriodAggregate,
    entry_flows,
    entry_net,
    first_expansion_days,
    funnel_counts,
    month_flow_aggregates,
    month_flow_net,
    tune_for_reports,
)
from service.adapters.ledger_repository import TimeWindow
from service.domain.errors import ValidationFailed
from service.domain.ledger import (
    OFFER_ENGINES,
    Engine,
    FunnelRow,
    Granularity,
    PeriodFlows,
    PeriodReport,
    funnel_row,
    median_days_to_first_expansion,
    month_index,
    month_start,
    months_per_period,
    period_buckets,
    report_from_flows,
    split_report_range,
)
from service.domain.periods import Period

# The funnel and the days-to-expansion median each read on a connection of their own.
REPORT_CONNECTIONS = 2
MAX_PERIODS = 240  # twenty years of months: enough for any board deck, small enough to answer
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class InvalidReportRange(ValidationFailed):
    code = "invalid_report_range"


@dataclass(frozen=True, slots=True)
class NrrReport:
    start: datetime
    end: datetime
    granularity: Granularity
    periods: list[PeriodReport]
    funnel: list[FunnelRow]
    median_days_to_first_expansion: Decimal | None


def period_count(start: datetime, end: datetime, granularity: Granularity) -> int:
    """len(period_buckets(start, end, granularity)), without building them."""
    step = months_per_period(granularity)
    last = month_index(end) // step
    at_boundary = (
        end == datetime(end.year, end.month, 1, tzinfo=UTC) and month_index(end) % step == 0
    )
    return last - month_index(start) // step + (0 if at_boundary else 1)


def _check_range(start: datetime, end: datetime, granularity: Granularity) -> None:
    if end <= start:
        raise InvalidReportRange("'to' must be after 'from'", field="to")
    if start < EARLIEST:
        raise InvalidReportRange("'from' must be in 1970 or later", field="from")
    if end > LATEST:
        raise InvalidReportRange("'to' must be before the year 9000", field="to")
    count = period_count(start, end, granularity)
    if count > MAX_PERIODS:
        raise InvalidReportRange(
            f"at most {MAX_PERIODS} periods per report, this range has {count}", field="to"
        )


def _flows(
    period: Period, currency: str, starting: int, found: PeriodAggregate | None
) -> PeriodFlows:
    if found is None:
        return PeriodFlows(
            period=period,
            currency=currency,
            starting_mrr=starting,
            new=0,
            expansion_by_engine={},
            contraction=0,
            churn=0,
            reactivation=0,
            cohort_expansion=0,
            cohort_contraction=0,
            cohort_churn=0,
            cohort_capped_loss=0,
        )
    return PeriodFlows(
        period=period,
        currency=currency,
        starting_mrr=starting,
        new=found.new,
        expansion_by_engine=found.expansion_by_engine,
        contraction=found.contraction,
        churn=found.churn,
        reactivation=found.reactivation,
        cohort_expansion=found.cohort_expansion,
        cohort_contraction=found.cohort_contraction,
        cohort_churn=found.cohort_churn,
        cohort_capped_loss=found.cohort_capped_loss,
    )


def reports_from_aggregates(
    aggregates: Iterable[PeriodAggregate],
    start: datetime,
    end: datetime,
    granularity: Granularity,
) -> list[PeriodReport]:
    """One report per (period, currency) with MRR at its start or a movement in it."""
    periods = period_buckets(start, end, granularity)
    first_bucket = month_index(start) // months_per_period(granularity)
    by_bucket: dict[int, dict[str, PeriodAggregate]] = {}
    for found in aggregates:
        same = by_bucket.setdefault(found.bucket, {}).setdefault(
            found.currency, PeriodAggregate(found.bucket, found.currency)
        )
        same.merge(found)
    # Total MRR per currency at the current period's start: everything booked before it.
    balances = {currency: found.net for currency, found in by_bucket.get(-1, {}).items()}
    reports: list[PeriodReport] = []
    for index, period in enumerate(periods):
        in_period = by_bucket.get(first_bucket + index, {})
        currencies = sorted(set(in_period) | {c for c, mrr in balances.items() if mrr})
        for currency in currencies:
            flows = _flows(period, currency, balances.get(currency, 0), in_period.get(currency))
            reports.append(report_from_flows(flows))
        for currency, found in in_period.items():
            balances[currency] = balances.get(currency, 0) + found.net
    return reports


def period_aggregates(
    connection: sa.Connection,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    *,
    use_rollup: bool = True,
) -> list[PeriodAggregate]:
    """The movements of [start, end) per period and currency, and the net before `start`.

    Whole periods (and a last one cut at a month end) come from the monthly rollup, a few rows
    per month; a period that the range cuts inside a month is summed from its entries, and the
    net before `start` is the rollup's months before it plus the entries of its cut month.
    `use_rollup=False` sums everything from the entries (what the tests hold the rollup to).
    """
    step = months_per_period(granularity)
    if not use_rollup:
        return [
            *entry_net(connection, TimeWindow(end=start)),
            *entry_flows(connection, start, end, months_per_bucket=step),
        ]
    first_month = month_index(start)
    found = [
        *month_flow_net(connection, first_month),
        *entry_net(connection, TimeWindow(month_start(first_month), start)),
    ]
    split = split_report_range(start, end, granularity)
    for cut in (split.head, split.tail):
        if cut is not None:
            found += entry_flows(connection, cut.start, cut.end, months_per_bucket=step)
    if split.whole is not None:
        whole = range(month_index(split.whole.start), month_index(split.whole.end))
        found += month_flow_aggregates(connection, whole.start, whole.stop, months_per_bucket=step)
    return found


def period_reports_from_sql(
    engine: sa.Engine,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    *,
    use_rollup: bool = True,
) -> list[PeriodReport]:
    """The period reports, read in one snapshot (REPEATABLE READ on PostgreSQL; a SQLite
    transaction is one already) so the rollup and the entries agree."""
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as connection:
        tune_for_reports(connection)
        found = period_aggregates(connection, start, end, granularity, use_rollup=use_rollup)
    return reports_from_aggregates(found, start, end, granularity)


def offer_funnel_from_sql(
    connection: sa.Connection, start: datetime, end: datetime
) -> list[FunnelRow]:
    """Every engine in and out of the post-activation window, like domain.ledger.offer_funnel."""
    counts = {(engine, inside): (0, 0, 0) for engine in OFFER_ENGINES for inside in (True, False)}
    for engine_name, inside, served, seen, accepted in funnel_counts(connection, start, end):
        try:
            engine = Engine(engine_name)
        except ValueError:
            continue  # an offer kind no ledger engine matches has no place in this funnel
        if engine not in OFFER_ENGINES:
            continue
        before = counts[(engine, inside)]
        counts[(engine, inside)] = (before[0] + served, before[1] + seen, before[2] + accepted)
    return [
        funnel_row(engine, in_window=inside, served=served, seen=seen, accepted=accepted)
        for (engine, inside), (served, seen, accepted) in counts.items()
    ]


def _funnel(engine: sa.Engine, start: datetime, end: datetime) -> list[FunnelRow]:
    with engine.connect() as connection:
        tune_for_reports(connection)
        return offer_funnel_from_sql(connection, start, end)


def _median_days(engine: sa.Engine, start: datetime, end: datetime) -> Decimal | None:
    with engine.connect() as connection:
        tune_for_reports(connection)
        return median_days_to_first_expansion(first_expansion_days(connection, start, end))


def nrr_report(
    engine: sa.Engine, start: datetime, end: datetime, granularity: Granularity
) -> NrrReport:
    """Movements, NRR, GRR, quick ratio and expansion share per period and currency, and the
    offer funnel of offers shown in [start, end). Read-only, on connections of its own."""
    granularity = Granularity(granularity)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    _check_range(start, end, granularity)
    if engine.dialect.name == "postgresql":
        # The three reads are independent: on PostgreSQL they run side by side, each on a
        # connection of its own, so a machine's cores share the work.
        with ThreadPoolExecutor(max_workers=REPORT_CONNECTIONS) as pool:
            funnel_part = pool.submit(_funnel, engine, start, end)
            median_part = pool.submit(_median_days, engine, start, end)
            periods = period_reports_from_sql(engine, start, end, granularity)
            funnel, median = funnel_part.result(), median_part.result()
    else:  # SQLite serializes its connections anyway
        periods = period_reports_from_sql(engine, start, end, granularity)
        funnel, median = _funnel(engine, start, end), _median_days(engine, start, end)
    return NrrReport(
        start=start,
        end=end,
        granularity=granularity,
        periods=periods,
        funnel=funnel,
        median_days_to_first_expansion=median,
    )


def _ratio(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def report_document(report: NrrReport) -> dict[str, Any]:
    """The report as JSON-ready data: amounts in integer minor units, ratios as decimal strings."""
    return {
        "from": report.start,
        "to": report.end,
        "granularity": report.granularity.value,
        "periods": [
            {
                "period_start": item.period.start,
                "period_end": item.period.end,
                "currency": item.currency,
                "starting_mrr_minor": item.starting_mrr,
                "new_minor": item.new,
                "expansion_minor": item.expansion,
                "expansion_by_engine_minor": {
                    engine.value: amount for engine, amount in item.expansion_by_engine.items()
                },
                "contraction_minor": item.contraction,
                "churn_minor": item.churn,
                "reactivation_minor": item.reactivation,
                "ending_mrr_minor": item.ending_mrr,
                "retained_mrr_minor": item.retained_mrr,
                "gross_retained_mrr_minor": item.gross_retained_mrr,
                "nrr": _ratio(item.nrr),
                "grr": _ratio(item.grr),
                "quick_ratio": _ratio(item.quick_ratio),
                "expansion_share": _ratio(item.expansion_share),
            }
            for item in report.periods
        ],
        "offer_funnel": {
            "rows": [
                {
                    "engine": row.engine.value,
                    "in_activation_window": row.in_window,
                    "served": row.served,
                    "seen": row.seen,
                    "accepted": row.accepted,
                    "conversion": _ratio(row.conversion),
                }
                for row in report.funnel
            ],
            "median_days_to_first_expansion": _ratio(report.median_days_to_first_expansion),
        },
    }
