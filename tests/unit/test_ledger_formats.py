"""Pure pieces of the ledger services: export formatting, cursors, report ranges, defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.adapters.ledger_export_sql import EXPORT_SOURCE
from service.domain.ledger import Granularity, Motion, Source, month_index, period_buckets
from service.domain.money import Money
from service.services.ledger import default_attribution
from service.services.ledger_entries import InvalidCursor, decode_cursor, encode_cursor
from service.services.ledger_export import (
    EXPORT_COLUMNS,
    decimal_text,
    export_values,
    utc_text,
    zero_decimal_currencies,
)
from service.services.reports import period_count

CURRENCIES = st.sampled_from(["USD", "EUR", "JPY", "KRW", "GBP", "CLP"])
MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@given(st.integers(min_value=-(10**15), max_value=10**15), CURRENCIES)
def test_decimal_text_is_money_to_decimal(minor: int, currency: str) -> None:
    assert decimal_text(minor, currency) == format(Money(minor, currency).to_decimal(), "f")


def test_decimal_text_examples() -> None:
    assert [decimal_text(n, "USD") for n in (0, 5, -5, 100, -12_345)] == [
        "0.00",
        "0.05",
        "-0.05",
        "1.00",
        "-123.45",
    ]
    assert decimal_text(-1_200, "JPY") == "-1200"


def test_zero_decimal_currencies_follow_money() -> None:
    found = zero_decimal_currencies()
    assert {"JPY", "KRW", "CLP"} <= found and not {"USD", "EUR", "GBP"} & found


def test_utc_text_matches_the_hashed_form() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC)
    assert utc_text(moment) == "2026-01-02T03:04:05.000007Z"
    assert utc_text(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000000Z"


def test_export_values_line_up_with_the_columns() -> None:
    # export_values unpacks the raw row by position, so the source order is part of its contract.
    raw_names = [
        name for name in EXPORT_COLUMNS if name not in ("mrr_before", "mrr_after", "mrr_delta")
    ]
    assert raw_names == list(EXPORT_SOURCE)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    raw = {name: f"<{name}>" for name in EXPORT_SOURCE}
    raw |= {"occurred_at": moment, "recorded_at": moment, "currency": "USD"}
    raw |= {"mrr_before_minor": 100, "mrr_after_minor": 250, "mrr_delta_minor": 150}
    values = dict(zip(EXPORT_COLUMNS, export_values(list(raw.values())), strict=True))
    assert values["mrr_before"] == "1.00" and values["mrr_delta"] == "1.50"
    assert values["occurred_at"] == "2026-01-01T00:00:00.000000Z"
    assert values["hash"] == "<hash>" and values["signal_ids"] == "<signal_ids>"


@given(st.integers(min_value=0, max_value=2**62))
def test_cursors_round_trip(entry_id: int) -> None:
    assert decode_cursor(encode_cursor(entry_id)) == entry_id


@pytest.mark.parametrize("cursor", ["", "x", "bGUxOg", "bGUxOi0x", "bm9wZQ", "%%%", "bGUxOjFh"])
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as raised:
        decode_cursor(cursor)
    assert raised.value.field == "cursor" and raised.value.status == 422


@given(MOMENTS, st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=4000)))
def testperiod_count_is_the_number_of_buckets(start: datetime, length: timedelta) -> None:
    end = start + length
    for granularity in Granularity:
        assert period_count(start, end, granularity) == len(period_buckets(start, end, granularity))


def test_month_index_is_months_since_year_zero() -> None:
    assert month_index(datetime(2026, 1, 31, tzinfo=UTC)) == 2026 * 12
    assert month_index(datetime(2026, 12, 1, tzinfo=UTC)) == 2026 * 12 + 11


def test_default_attribution_names_the_motion() -> None:
    assert default_attribution(Source.SELF_SERVE_OFFER, strategic=False).motion is Motion.SELF_SERVE
    assert default_attribution(Source.WEBHOOK, strategic=False).motion is Motion.SELF_SERVE
    assert default_attribution(Source.ADMIN, strategic=False).motion is Motion.CS_ASSISTED
    assert default_attribution(Source.API, strategic=True).motion is Motion.SALES_ASSISTED
