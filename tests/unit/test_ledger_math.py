"""Worked-number tests for the ledger: classification, normalization, hash chain and reports."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.ledger import (
    GENESIS_HASH,
    Attribution,
    Engine,
    Granularity,
    LedgerEntryDraft,
    Motion,
    Movement,
    MovementKind,
    OfferImpression,
    PeriodFlows,
    PlanSnapshot,
    RecurringLine,
    ReportSplit,
    Source,
    canonical_bytes,
    chain_hash,
    classify,
    cohort_share,
    engine_for_change,
    funnel_row,
    in_activation_window,
    median_days_to_first_expansion,
    month_and_quarter_start,
    month_index,
    month_start,
    months_per_period,
    offer_funnel,
    period_buckets,
    period_flows,
    period_reports,
    ratio,
    report_from_flows,
    rollforward_reports,
    split_report_range,
    subscription_mrr,
    verify_chain,
)
from service.domain.money import CurrencyMismatchError, Money, monthly_from_interval
from service.domain.periods import Period

YEAR_2026 = Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
Q1_2026 = Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


def at(month: int, day: int = 1, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def move(
    account: str,
    before: int,
    after: int,
    when: datetime,
    *,
    engine: Engine | None = None,
    currency: str = "USD",
    has_paid_before: bool = False,
) -> Movement:
    kind = classify(before, after, has_paid_before=has_paid_before)
    assert kind is not None
    return Movement(
        account_id=account,
        kind=kind,
        engine=engine,
        mrr_before=before,
        mrr_after=after,
        currency=currency,
        occurred_at=when,
    )


def base_of_100(mrr: int = 25_000) -> dict[tuple[str, str], int]:
    """100 accounts of 25,000 MRR: 2,500,000 MRR, i.e. 30,000,000 ARR."""
    return {(f"acct-{n:02d}", "USD"): mrr for n in range(100)}


def only(reports: list) -> object:
    assert len(reports) == 1
    return reports[0]


# --- classification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "has_paid", "expected"),
    [
        (0, 2_900, False, MovementKind.NEW),
        (0, 2_900, True, MovementKind.REACTIVATION),
        (2_900, 9_900, True, MovementKind.EXPANSION),
        (9_900, 2_900, True, MovementKind.CONTRACTION),
        (9_900, 0, True, MovementKind.CHURN),
        (9_900, 9_900, True, None),
        (0, 0, False, None),
    ],
)
def test_classify_examples(before, after, has_paid, expected):
    assert classify(before, after, has_paid_before=has_paid) is expected


@pytest.mark.parametrize(("before", "after"), [(-1, 0), (0, -1), (-5, 5)])
def test_negative_mrr_is_refused(before, after):
    with pytest.raises(ValueError):
        classify(before, after, has_paid_before=True)


def test_movement_kind_must_match_its_numbers():
    with pytest.raises(ValueError):
        Movement(
            account_id="a",
            kind=MovementKind.EXPANSION,
            engine=Engine.SEAT,
            mrr_before=100,
            mrr_after=50,
            currency="USD",
            occurred_at=at(1),
        )
    with pytest.raises(ValueError, match="engine"):
        move("a", 100, 200, at(1))  # expansion without an engine
    with pytest.raises(ValueError, match="engine"):
        move("a", 100, 0, at(1), engine=Engine.SEAT)  # churn carries no engine
    with pytest.raises(ValueError):
        move("a", 100, 200, datetime(2026, 1, 1), engine=Engine.SEAT)  # noqa: DTZ001 naive


# --- engines -----------------------------------------------------------------------------------


GROWTH_5 = PlanSnapshot("growth", 5, {"api_pack": 1})


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (PlanSnapshot("business", 5, {"api_pack": 1}), Engine.UPSELL),
        (PlanSnapshot("business", 12, {"api_pack": 1}), Engine.UPSELL),  # tier wins over seats
        (PlanSnapshot("growth", 8, {"api_pack": 1}), Engine.SEAT),
        (PlanSnapshot("growth", 5, {"api_pack": 2}), Engine.ADDON),
        (PlanSnapshot("growth", 5, {"api_pack": 1, "audit_log": 1}), Engine.ADDON),
        (PlanSnapshot("growth", 8, {"api_pack": 2}), Engine.SEAT),  # seats win over add-ons
        (PlanSnapshot("growth", 5, {"api_pack": 1, "audit_log": 0}), None),  # zero == absent
    ],
)
def test_engine_for_change(after, expected):
    assert engine_for_change(GROWTH_5, after) is expected


def test_the_same_items_at_another_catalog_version_are_a_price_uplift():
    old = PlanSnapshot("growth", 5, {"api_pack": 1}, version="2026-11-01.1")
    new = PlanSnapshot("growth", 5, {"api_pack": 1}, version="2026-12-01.1")
    assert engine_for_change(old, new) is Engine.PRICE_UPLIFT
    assert engine_for_change(new, old) is Engine.PRICE_UPLIFT  # a price decrease: the same
    # Any change of items wins over the version (a tier change buys the version in force).
    moved_up = PlanSnapshot("business", 10, version="2026-12-01.1")
    assert engine_for_change(old, moved_up) is Engine.UPSELL
    more_seats = PlanSnapshot("growth", 8, {"api_pack": 1}, version="2026-12-01.1")
    assert engine_for_change(old, more_seats) is Engine.SEAT
    # A side that names no version (a caller that does not know it) is no price change.
    assert engine_for_change(GROWTH_5, new) is None
    assert engine_for_change(old, new, strategic=True) is Engine.STRATEGIC


def test_strategic_override_wins():
    upsell = PlanSnapshot("enterprise", 50)
    assert engine_for_change(GROWTH_5, upsell, strategic=True) is Engine.STRATEGIC
    assert engine_for_change(GROWTH_5, GROWTH_5, strategic=True) is Engine.STRATEGIC


# --- MRR normalization -------------------------------------------------------------------------


def test_yearly_prices_normalize_half_away_from_zero():
    assert monthly_from_interval(100_000, 12) == 8_333  # 8,333.33
    assert monthly_from_interval(1_000, 12) == 83  # 83.33
    assert monthly_from_interval(6, 12) == 1  # 0.5 rounds away from zero
    assert monthly_from_interval(18, 12) == 2  # 1.5 -> 2
    assert monthly_from_interval(30, 12) == 3  # 2.5 -> 3, where half-even would give 2
    yearly = RecurringLine(unit_amount=100_000, currency="USD", interval_months=12)
    assert yearly.mrr == Money(8_333, "USD")


def test_subscription_mrr_normalizes_each_line_then_sums():
    lines = [
        # business base, yearly: 299,000 / 12 = 24,916.67 -> 24,917
        RecurringLine(unit_amount=299_000, currency="USD", interval_months=12),
        # 12 yearly seats: 300,000 / 12 = 25,000
        RecurringLine(unit_amount=25_000, currency="USD", quantity=12, interval_months=12),
        # monthly API pack: 4,900
        RecurringLine(unit_amount=4_900, currency="USD"),
    ]
    assert subscription_mrr(lines, currency="USD") == Money(54_817, "USD")
    # Two yearly lines of 6 are 1 + 1 = 2, not (6 + 6) / 12 = 1: lines are rounded first.
    halves = [RecurringLine(unit_amount=6, currency="USD", interval_months=12)] * 2
    assert subscription_mrr(halves, currency="USD") == Money(2, "USD")
    assert subscription_mrr([], currency="EUR") == Money(0, "EUR")


def test_subscription_mrr_refuses_mixed_currencies():
    lines = [
        RecurringLine(unit_amount=1_000, currency="USD"),
        RecurringLine(unit_amount=1_000, currency="EUR"),
    ]
    with pytest.raises(CurrencyMismatchError):
        subscription_mrr(lines, currency="USD")


# --- NRR on a 30,000,000 ARR base --------------------------------------------------------------


def test_nrr_115_percent_turns_30m_arr_into_34_5m():
    base = base_of_100()
    assert sum(base.values()) * 12 == 30_000_000
    movements = []
    # 40 accounts grow 25,000 -> 35,000: 20 by seats, 10 by upsell, 10 by add-ons = 400,000.
    engines = [Engine.SEAT] * 20 + [Engine.UPSELL] * 10 + [Engine.ADDON] * 10
    for n, engine in enumerate(engines):
        movements.append(move(f"acct-{n:02d}", 25_000, 35_000, at(n % 12 + 1), engine=engine))
    # One strategic deal 25,000 -> 75,000 = 50,000.  Expansion: 450,000.
    movements.append(move("acct-40", 25_000, 75_000, at(6), engine=Engine.STRATEGIC))
    # 5 contract 25,000 -> 20,000 = 25,000; 2 churn = 50,000.
    movements += [move(f"acct-{n}", 25_000, 20_000, at(9)) for n in range(50, 55)]
    movements += [move(f"acct-{n}", 25_000, 0, at(11)) for n in (60, 61)]

    report = only(period_reports(movements, base, YEAR_2026))
    assert report.starting_mrr == 2_500_000
    assert report.expansion_by_engine == {
        Engine.SEAT: 200_000,
        Engine.UPSELL: 100_000,
        Engine.ADDON: 100_000,
        Engine.STRATEGIC: 50_000,
        Engine.PRICE_UPLIFT: 0,  # no catalog migration this year
    }
    assert (report.expansion, report.contraction, report.churn) == (450_000, 25_000, 50_000)
    # 2,500,000 + 450,000 - 25,000 - 50,000 = 2,875,000
    assert report.ending_mrr == report.retained_mrr == 2_875_000
    assert report.ending_mrr * 12 == 34_500_000
    assert report.nrr == Decimal("1.1500")
    assert report.grr == Decimal("0.9700")  # (2,500,000 - 75,000) / 2,500,000
    assert report.quick_ratio == Decimal("6.0000")  # 450,000 / 75,000
    assert report.expansion_share == Decimal("1.0000")  # no new, no reactivation

    # The same year month by month: each month starts where the previous one ended.
    months = period_buckets(YEAR_2026.start, YEAR_2026.end, Granularity.MONTH)
    monthly = rollforward_reports(movements, base, months)
    assert len(monthly) == 12
    for earlier, later in itertools.pairwise(monthly):
        assert later.starting_mrr == earlier.ending_mrr
    assert monthly[-1].ending_mrr * 12 == 34_500_000


def test_nrr_90_percent_turns_30m_arr_into_27m():
    base = base_of_100()
    movements = [move(f"acct-{n:02d}", 25_000, 0, at(3)) for n in range(8)]  # churn 200,000
    # 8 contract by half: 8 x 12,500 = 100,000
    movements += [move(f"acct-{n}", 25_000, 12_500, at(5)) for n in range(10, 18)]
    # 5 add 10,000 of seats = 50,000
    movements += [
        move(f"acct-{n}", 25_000, 35_000, at(7), engine=Engine.SEAT) for n in range(20, 25)
    ]
    report = only(period_reports(movements, base, YEAR_2026))
    # 2,500,000 + 50,000 - 100,000 - 200,000 = 2,250,000
    assert report.ending_mrr == 2_250_000
    assert report.ending_mrr * 12 == 27_000_000
    assert report.nrr == Decimal("0.9000")
    assert report.grr == Decimal("0.8800")  # (2,500,000 - 300,000) / 2,500,000
    assert report.quick_ratio == Decimal("0.1667")  # 50,000 / 300,000 = 0.16666..


# --- reactivation, round trips, cohorts --------------------------------------------------------


def test_churned_account_that_returns_is_reactivation_not_expansion():
    # Churned in December 2025, so it enters Q1 at 0 and is outside the NRR cohort.
    assert classify(0, 30_000, has_paid_before=True) is MovementKind.REACTIVATION
    movements = [move("back", 0, 30_000, at(2), has_paid_before=True)]
    report = only(period_reports(movements, {("steady", "USD"): 10_000}, Q1_2026))
    assert report.reactivation == 30_000
    assert report.expansion == 0 and report.new == 0
    assert report.ending_mrr == 40_000
    assert report.nrr == Decimal("1.0000")  # the returning account is not in the cohort
    assert report.quick_ratio is None  # nothing lost


def test_churn_and_return_within_the_period_is_one_churn_and_one_reactivation():
    movements = [
        move("flaky", 25_000, 0, at(1, 10)),
        move("flaky", 0, 30_000, at(3, 5), has_paid_before=True),
    ]
    report = only(period_reports(movements, {("flaky", "USD"): 25_000}, Q1_2026))
    assert (report.churn, report.reactivation, report.expansion) == (25_000, 30_000, 0)
    assert report.ending_mrr == 30_000
    # Reactivation never counts toward NRR, even for a cohort account's own return.
    assert report.nrr == Decimal("0.0000")
    assert report.grr == Decimal("0.0000")


def test_a_new_movement_after_churn_is_rejected():
    movements = [move("a", 25_000, 0, at(1)), move("a", 0, 25_000, at(2))]  # "new" again
    with pytest.raises(ValueError, match="reactivation"):
        period_reports(movements, {("a", "USD"): 25_000}, Q1_2026)


def test_upgrade_then_equal_downgrade_nets_to_zero_but_shows_both_movements():
    up = move("acct", 25_000, 35_000, at(1, 10), engine=Engine.UPSELL)
    down = move("acct", 35_000, 25_000, at(2, 20), engine=Engine.UPSELL)
    assert (up.kind, down.kind) == (MovementKind.EXPANSION, MovementKind.CONTRACTION)
    assert up.delta + down.delta == 0
    report = only(period_reports([up, down], {("acct", "USD"): 25_000}, Q1_2026))
    assert report.ending_mrr == report.starting_mrr == 25_000
    assert report.expansion_by_engine[Engine.UPSELL] == 10_000
    assert report.contraction == 10_000
    assert report.nrr == Decimal("1.0000")
    assert report.grr == Decimal("0.6000")  # gross: the contraction still counts as a loss
    assert report.quick_ratio == Decimal("1.0000")


def test_new_accounts_stay_out_of_nrr_and_grr():
    movements = [
        move("newco", 0, 50_000, at(1, 15)),
        move("newco", 50_000, 60_000, at(2, 15), engine=Engine.SEAT),
        move("newco", 60_000, 40_000, at(3, 1)),
    ]
    report = only(period_reports(movements, {("old", "USD"): 10_000}, Q1_2026))
    assert (report.new, report.expansion, report.contraction) == (50_000, 10_000, 20_000)
    assert report.ending_mrr == 50_000  # 10,000 + 50,000 + 10,000 - 20,000
    assert report.retained_mrr == 10_000
    assert report.nrr == Decimal("1.0000")
    assert report.grr == Decimal("1.0000")
    assert report.quick_ratio == Decimal("3.0000")  # (50,000 + 10,000) / 20,000
    assert report.expansion_share == Decimal("0.1667")  # 10,000 / 60,000


def test_grr_never_exceeds_one_and_losses_are_capped_at_starting_mrr():
    movements = [
        move("a", 25_000, 40_000, at(1, 10), engine=Engine.SEAT),
        move("a", 40_000, 0, at(3, 10)),
    ]
    report = only(period_reports(movements, {("a", "USD"): 25_000}, Q1_2026))
    assert report.churn == 40_000
    assert report.nrr == Decimal("0.0000")  # (25,000 + 15,000 - 40,000) / 25,000
    assert report.grr == Decimal("0.0000")  # not (25,000 - 40,000) / 25,000 = -0.6
    growth = [move("a", 25_000, 90_000, at(2), engine=Engine.UPSELL)]
    report = only(period_reports(growth, {("a", "USD"): 25_000}, Q1_2026))
    assert report.nrr == Decimal("3.6000")
    assert report.grr == Decimal("1.0000")


def test_quick_ratio_worked_example():
    base = {("exp", "USD"): 20_000, ("con", "USD"): 30_000, ("gone", "USD"): 30_000}
    movements = [
        move("fresh", 0, 50_000, at(1)),  # new 50,000
        move("exp", 20_000, 50_000, at(1), engine=Engine.ADDON),  # expansion 30,000
        move("back", 0, 20_000, at(2), has_paid_before=True),  # reactivation 20,000
        move("con", 30_000, 20_000, at(2)),  # contraction 10,000
        move("gone", 30_000, 0, at(3)),  # churn 30,000
    ]
    report = only(period_reports(movements, base, Q1_2026))
    assert report.quick_ratio == Decimal("2.5000")  # 100,000 / 40,000
    assert report.expansion_share == Decimal("0.3000")  # 30,000 / 100,000
    assert report.ending_mrr == 140_000  # 80,000 + 100,000 - 40,000
    assert report.nrr == Decimal("0.8750")  # (80,000 + 30,000 - 10,000 - 30,000) / 80,000
    assert report.grr == Decimal("0.5000")  # (80,000 - 10,000 - 30,000) / 80,000


def test_currencies_are_never_summed():
    base = {("eu", "EUR"): 10_000, ("us", "USD"): 20_000}
    movements = [
        move("eu", 10_000, 15_000, at(2), engine=Engine.SEAT, currency="EUR"),
        move("us", 20_000, 0, at(2), currency="USD"),
    ]
    eur, usd = period_reports(movements, base, Q1_2026)
    assert (eur.currency, eur.starting_mrr, eur.ending_mrr) == ("EUR", 10_000, 15_000)
    assert (usd.currency, usd.starting_mrr, usd.ending_mrr) == ("USD", 20_000, 0)
    assert eur.nrr == Decimal("1.5000") and usd.nrr == Decimal("0.0000")


def test_empty_start_gives_no_ratios():
    report = only(period_reports([move("n", 0, 5_000, at(1))], {}, Q1_2026))
    assert report.starting_mrr == 0
    assert report.nrr is None and report.grr is None and report.quick_ratio is None
    assert report.expansion_share == Decimal("0.0000")


def test_report_inputs_are_checked():
    with pytest.raises(ValueError, match="MRR was"):  # first movement disagrees with the start
        period_reports([move("a", 10_000, 20_000, at(1), engine=Engine.SEAT)], {}, Q1_2026)
    with pytest.raises(ValueError, match="outside"):
        period_reports([move("a", 0, 20_000, at(5))], {}, Q1_2026)


def test_flows_from_sql_aggregates_give_the_same_report():
    movements = [
        move("a", 25_000, 35_000, at(1), engine=Engine.SEAT),
        move("b", 25_000, 0, at(2)),
        move("c", 0, 10_000, at(3)),
    ]
    base = {("a", "USD"): 25_000, ("b", "USD"): 25_000}
    (computed,) = period_flows(movements, base, Q1_2026)
    from_sql = PeriodFlows(
        period=Q1_2026,
        currency="usd",
        starting_mrr=50_000,
        new=10_000,
        expansion_by_engine={"seat": 10_000},
        contraction=0,
        churn=25_000,
        reactivation=0,
        cohort_expansion=10_000,
        cohort_contraction=0,
        cohort_churn=25_000,
        cohort_capped_loss=25_000,
    )
    assert from_sql == computed
    assert report_from_flows(from_sql) == report_from_flows(computed)
    with pytest.raises(ValueError):
        dataclasses.replace(from_sql, cohort_churn=30_000)  # more than total churn


# --- periods -----------------------------------------------------------------------------------


def test_month_buckets_clip_at_both_ends():
    buckets = period_buckets(at(1, 15, 0), at(4, 10, 0), Granularity.MONTH)
    assert [(b.start.date().isoformat(), b.end.date().isoformat()) for b in buckets] == [
        ("2026-01-15", "2026-02-01"),
        ("2026-02-01", "2026-03-01"),
        ("2026-03-01", "2026-04-01"),
        ("2026-04-01", "2026-04-10"),
    ]


def test_quarter_buckets_follow_the_utc_calendar():
    # 2026-02-01 00:30 at +02:00 is 2026-01-31 22:30 UTC, which is in Q1.
    start = datetime(2026, 2, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    buckets = period_buckets(start, datetime(2027, 1, 1, tzinfo=UTC), Granularity.QUARTER)
    assert [b.start for b in buckets] == [
        datetime(2026, 1, 31, 22, 30, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
        datetime(2026, 7, 1, tzinfo=UTC),
        datetime(2026, 10, 1, tzinfo=UTC),
    ]
    assert buckets[-1].end == datetime(2027, 1, 1, tzinfo=UTC)


# --- hash chain --------------------------------------------------------------------------------


def entry(n: int, before: int, after: int, kind: MovementKind, engine: Engine | None = None):
    return LedgerEntryDraft(
        idempotency_key=f"idem-{n}",
        account_id="acct-1",
        kind=kind,
        engine=engine,
        mrr_before=before,
        mrr_after=after,
        currency="usd",
        source=Source.SELF_SERVE_OFFER,
        attribution=Attribution(
            motion=Motion.SELF_SERVE,
            offer_id=f"offer-{n}",
            signal_ids=("seats_full", "api_calls_warn"),
            days_since_activation=n,
        ),
        occurred_at=datetime(2026, 11, n + 1, 9, 30, tzinfo=UTC),
        stripe_invoice_id=f"in_{n}",
        stripe_subscription_id="sub_1",
        catalog_version="2026-11-01.1",
    )


FIVE = [
    entry(0, 0, 2_900, MovementKind.NEW),
    entry(1, 2_900, 9_900, MovementKind.EXPANSION, Engine.UPSELL),
    entry(2, 9_900, 12_900, MovementKind.EXPANSION, Engine.SEAT),
    entry(3, 12_900, 9_900, MovementKind.CONTRACTION, Engine.SEAT),
    entry(4, 9_900, 0, MovementKind.CHURN),
]


def chained(entries):
    rows, prev = [], None
    for item in entries:
        prev = chain_hash(prev, item)
        rows.append((item, prev))
    return rows


def test_canonical_bytes_are_exact_and_deterministic():
    expected = (
        b'{"account_id":"acct-1","catalog_version":"2026-11-01.1","currency":"USD",'
        b'"days_since_activation":1,"delta":7000,"engine":"upsell",'
        b'"idempotency_key":"idem-1","kind":"expansion","motion":"self_serve",'
        b'"mrr_after":9900,"mrr_before":2900,"occurred_at":"2026-11-02T09:30:00.000000Z",'
        b'"offer_id":"offer-1","signal_ids":["api_calls_warn","seats_full"],'
        b'"source":"self_serve_offer","stripe_invoice_id":"in_1",'
        b'"stripe_subscription_id":"sub_1"}'
    )
    assert canonical_bytes(FIVE[1]) == expected
    # Same instant in another zone, signals in another order: same bytes.
    shifted = dataclasses.replace(
        FIVE[1],
        occurred_at=datetime(2026, 11, 2, 10, 30, tzinfo=timezone(timedelta(hours=1))),
        attribution=dataclasses.replace(
            FIVE[1].attribution, signal_ids=("seats_full", "api_calls_warn", "seats_full")
        ),
    )
    assert canonical_bytes(shifted) == expected
    assert canonical_bytes(FIVE[1].to_record()) == expected


def test_first_hash_chains_from_64_zeros():
    assert GENESIS_HASH == "0" * 64
    digest = hashlib.sha256(b"0" * 64 + canonical_bytes(FIVE[0])).hexdigest()
    assert chain_hash(None, FIVE[0]) == digest


def test_untouched_chain_verifies():
    assert verify_chain(chained(FIVE)) is None
    assert verify_chain([]) is None


def test_tampered_delta_is_found_at_its_index():
    rows = [(item.to_record(), stored) for item, stored in chained(FIVE)]
    record, stored = rows[2]
    rows[2] = ({**record, "delta": record["delta"] + 1}, stored)
    assert verify_chain(rows) == 2


def test_tampered_amount_in_a_draft_is_found_at_its_index():
    rows = chained(FIVE)
    item, stored = rows[2]
    rows[2] = (dataclasses.replace(item, mrr_after=13_900), stored)  # delta becomes 4,000
    assert verify_chain(rows) == 2


def test_malformed_rows_and_checkpoints():
    rows = chained(FIVE)
    record = rows[1][0].to_record()
    del record["catalog_version"]
    assert verify_chain([rows[0], (record, rows[1][1])]) == 1
    assert verify_chain(rows[3:], prev_hash=rows[2][1]) is None
    assert verify_chain(rows[3:]) == 0  # without the checkpoint the first row cannot match


# --- funnel ------------------------------------------------------------------------------------


def test_activation_window_is_half_open():
    assert in_activation_window(0, 30) and in_activation_window(29, 30)
    assert not in_activation_window(30, 30)
    assert not in_activation_window(None, 30)


def test_offer_funnel_counts_conversion_per_engine_and_window():
    def shown(oid: str, days: int | None, *, seen: bool = True, accepted: bool = False):
        engine = Engine.UPSELL if oid.startswith("u") else Engine.SEAT
        return OfferImpression(
            engine=engine, offer_id=oid, seen=seen, accepted=accepted, days_since_activation=days
        )

    served = [
        shown("s1", 3, accepted=True),
        shown("s1", 3, accepted=True),  # one offer on two page loads: served 2, seen once
        shown("s2", 10),
        shown("s3", 12, seen=False),  # served, never on screen
        shown("s4", 45, accepted=True),
        shown("s5", None),
        shown("u1", 29, accepted=True),
    ]
    rows = {(row.engine, row.in_window): row for row in offer_funnel(served, window_days=30)}
    assert len(rows) == 8
    seat_in, seat_out = rows[(Engine.SEAT, True)], rows[(Engine.SEAT, False)]
    assert (seat_in.served, seat_in.seen, seat_in.accepted, seat_in.conversion) == (
        4,
        2,
        1,
        Decimal("0.5000"),
    )
    assert (seat_out.served, seat_out.seen, seat_out.accepted, seat_out.conversion) == (
        2,
        2,
        1,
        Decimal("0.5000"),
    )
    assert rows[(Engine.UPSELL, True)].conversion == Decimal("1.0000")
    assert rows[(Engine.ADDON, False)].conversion is None
    with pytest.raises(ValueError):
        funnel_row(Engine.ADDON, in_window=True, served=3, seen=1, accepted=2)


def test_median_days_to_first_expansion_uses_each_accounts_first():
    expansions = [("a", 12), ("a", 3), ("b", 20), ("c", 7), ("d", 40)]
    # firsts: 3, 7, 20, 40 -> (7 + 20) / 2
    assert median_days_to_first_expansion(expansions) == Decimal("13.5")
    assert median_days_to_first_expansion(expansions[:4]) == Decimal(7)  # 3, 7, 20
    assert median_days_to_first_expansion([]) is None


def test_ratio_rounds_half_even_to_four_places():
    assert ratio(1, 3) == Decimal("0.3333")
    assert ratio(2, 3) == Decimal("0.6667")
    assert ratio(1, 80_000) == Decimal("0.0000")  # 0.0000125
    assert ratio(3, 80_000) == Decimal("0.0000")  # 0.0000375 -> 0.0000 (even)
    assert ratio(5, 0) is None


# --- properties --------------------------------------------------------------------------------

mrr_values = st.integers(min_value=0, max_value=10**12)


@given(before=mrr_values, after=mrr_values, has_paid=st.booleans())
def test_classify_is_total_and_consistent(before, after, has_paid):
    kind = classify(before, after, has_paid_before=has_paid)
    delta = after - before
    if delta == 0:
        assert kind is None
        return
    assert kind is not None
    grows = kind in (MovementKind.NEW, MovementKind.EXPANSION, MovementKind.REACTIVATION)
    assert grows == (delta > 0)
    assert (kind is MovementKind.CHURN) == (after == 0)
    assert (kind in (MovementKind.NEW, MovementKind.REACTIVATION)) == (before == 0)
    if before == 0:
        assert kind is (MovementKind.REACTIVATION if has_paid else MovementKind.NEW)


def account_path(values: list[int]) -> list[Movement]:
    """Movements of one account through `values`; has_paid_before follows the history."""
    movements, has_paid = [], values[0] > 0
    for step, (before, after) in enumerate(itertools.pairwise(values)):
        kind = classify(before, after, has_paid_before=has_paid)
        if kind is None:
            continue
        movements.append(
            Movement(
                account_id="acct",
                kind=kind,
                engine=Engine.SEAT if kind is MovementKind.EXPANSION else None,
                mrr_before=before,
                mrr_after=after,
                currency="USD",
                occurred_at=Q1_2026.start + timedelta(hours=step),
            )
        )
        has_paid = has_paid or after > 0
    return movements


paths = st.lists(
    st.one_of(st.just(0), st.integers(min_value=0, max_value=10**9)), min_size=1, max_size=30
)


@given(values=paths)
def test_deltas_sum_to_the_mrr_change(values):
    movements = account_path(values)
    assert sum(m.delta for m in movements) == values[-1] - values[0]
    reports = period_reports(movements, {("acct", "USD"): values[0]}, Q1_2026)
    if not reports:  # no MRR at the start and no movement: nothing to report
        assert values[0] == 0 and not movements
        return
    (report,) = reports
    assert report.ending_mrr - report.starting_mrr == values[-1] - values[0]
    gained = report.new + report.expansion + report.reactivation
    assert report.ending_mrr == report.starting_mrr + gained - report.contraction - report.churn
    if report.grr is not None:
        assert Decimal(0) <= report.grr <= Decimal(1)
    if report.nrr is not None:
        # A cohort account loses at most its starting MRR, reactivated and churned again or not.
        assert report.nrr >= Decimal(0)
        assert report.retained_mrr >= 0


@given(histories=st.lists(paths, min_size=1, max_size=6))
def test_retention_stays_in_bounds_for_any_cohort(histories: list[list[int]]) -> None:
    """0 <= GRR <= 1 and NRR >= 0 for any set of account histories in one period."""
    movements, opening = [], {}
    for number, values in enumerate(histories):
        account = f"acct{number}"
        opening[(account, "USD")] = values[0]
        movements += [dataclasses.replace(m, account_id=account) for m in account_path(values)]
    for report in period_reports(movements, opening, Q1_2026):
        if report.grr is not None:
            assert Decimal(0) <= report.grr <= Decimal(1)
        if report.nrr is not None:
            assert report.nrr >= Decimal(0)


def test_churned_reactivated_and_churned_again_loses_the_starting_mrr_once() -> None:
    """starter 2,900 -> canceled -> reactivated -> canceled within one period: NRR 0, not -1."""
    movements = account_path([2_900, 0, 2_900, 0])
    [report] = period_reports(movements, {("acct", "USD"): 2_900}, Q1_2026)
    assert (report.churn, report.reactivation) == (5_800, 2_900)
    assert report.nrr == Decimal("0.0000") and report.grr == Decimal("0.0000")


@given(
    opening=st.integers(min_value=0, max_value=10**9),
    moves=st.lists(
        st.tuples(
            st.integers(min_value=-(10**9), max_value=10**9),
            st.sampled_from([MovementKind.EXPANSION, MovementKind.REACTIVATION]),
        ),
        max_size=12,
    ),
)
def test_cohort_shares_add_up_to_the_period_rule(
    opening: int, moves: list[tuple[int, MovementKind]]
) -> None:
    """Movement by movement, the shares sum to what _roll_period books per account and period:
    the cohort movements of a paying account, floored at minus its opening MRR, and losses
    capped at its opening MRR."""
    cohort = capped = losses = net = 0
    for delta, kind in moves:
        if delta < 0:
            kind = MovementKind.CONTRACTION
        share, used = cohort_share(
            delta, kind=kind, opening=opening, loss_before=losses, net_before=net
        )
        cohort += share
        capped += used
        assert 0 <= used <= max(0, -delta)
        assert abs(share) <= abs(delta) and share * delta >= 0
        losses += max(0, -delta)
        net += delta if kind is not MovementKind.REACTIVATION else 0
    assert cohort == (max(-opening, net) if opening else 0)
    assert capped == (min(opening, losses) if opening else 0)


@given(st.datetimes(timezones=st.just(UTC)))
def test_month_and_quarter_start_contain_the_moment(moment: datetime) -> None:
    month, quarter = month_and_quarter_start(moment)
    assert quarter <= month <= moment
    assert month_index(month) == month_index(moment)
    assert month_index(quarter) == month_index(moment) // 3 * 3


YEAR_2000, YEAR_2030 = datetime(2000, 1, 1), datetime(2030, 1, 1)  # noqa: DTZ001 - naive bounds


@given(
    st.datetimes(min_value=YEAR_2000, max_value=YEAR_2030, timezones=st.just(UTC)),
    st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=900)),
    st.sampled_from(Granularity),
)
def test_a_report_range_splits_into_cut_and_whole_periods(
    start: datetime, length: timedelta, granularity: Granularity
) -> None:
    end = start + length
    split = split_report_range(start, end, granularity)
    parts = [part for part in (split.head, split.whole, split.tail) if part is not None]
    assert parts[0].start == start and parts[-1].end == end
    assert all(left.end == right.start for left, right in itertools.pairwise(parts))
    step = months_per_period(granularity)
    if split.whole is not None:
        assert split.whole.start == month_start(month_index(split.whole.start))
        assert month_index(split.whole.start) % step == 0
        assert split.whole.end == month_start(month_index(split.whole.end))
    for cut in (split.head, split.tail):  # a cut part lies inside one period
        if cut is not None:
            last = cut.end - timedelta(microseconds=1)
            assert month_index(cut.start) // step == month_index(last) // step


def test_a_report_range_split_by_hand() -> None:
    jan, feb, apr = (datetime(2026, month, 1, tzinfo=UTC) for month in (1, 2, 4))
    mid_feb, mid_may = datetime(2026, 2, 15, tzinfo=UTC), datetime(2026, 5, 15, tzinfo=UTC)
    assert split_report_range(jan, apr, Granularity.QUARTER) == ReportSplit(
        head=None, whole=Period(jan, apr), tail=None
    )
    assert split_report_range(mid_feb, mid_may, Granularity.QUARTER) == ReportSplit(
        head=Period(mid_feb, apr), whole=None, tail=Period(apr, mid_may)
    )
    assert split_report_range(feb, mid_may, Granularity.MONTH) == ReportSplit(
        head=None,
        whole=Period(feb, datetime(2026, 5, 1, tzinfo=UTC)),
        tail=Period(datetime(2026, 5, 1, tzinfo=UTC), mid_may),
    )
    assert split_report_range(feb, mid_may, Granularity.QUARTER) == ReportSplit(
        head=Period(feb, apr), whole=None, tail=Period(apr, mid_may)
    )
