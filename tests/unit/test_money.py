"""Money: integer minor units, one currency, symmetric rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.money import (
    CurrencyMismatchError,
    Money,
    monthly_from_interval,
    percent_of,
    round_half_away,
)
from service.domain.quotes import PriceBreakdown


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError):
        Money(19.99, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, "USD")  # type: ignore[arg-type]


def test_currency_is_validated_and_never_mixed() -> None:
    assert Money(100, "usd").currency == "USD"
    with pytest.raises(ValueError):
        Money(1, "dollars")
    with pytest.raises(CurrencyMismatchError):
        Money(1, "USD") + Money(1, "EUR")


def test_decimal_view_knows_zero_decimal_currencies() -> None:
    assert Money(1999, "USD").to_decimal() == Decimal("19.99")
    assert Money(1999, "JPY").to_decimal() == Decimal("1999")


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(5, 2, 3), (-5, 2, -3), (4, 3, 1), (-4, 3, -1), (1, 2, 1), (0, 7, 0), (7, -2, -4)],
)
def test_round_half_away_from_zero(numerator: int, denominator: int, expected: int) -> None:
    assert round_half_away(numerator, denominator) == expected


def test_yearly_to_monthly() -> None:
    assert monthly_from_interval(100_000, 12) == 8_333
    assert monthly_from_interval(1_000, 12) == 83
    assert monthly_from_interval(2_900, 1) == 2_900


@given(st.integers(-(10**12), 10**12), st.integers(1, 10**9))
def test_rounding_is_symmetric_and_within_half(numerator: int, denominator: int) -> None:
    rounded = round_half_away(numerator, denominator)
    assert round_half_away(-numerator, denominator) == -rounded
    assert abs(rounded * denominator - numerator) * 2 <= denominator


@given(st.integers(0, 10**9), st.integers(0, 10**6), st.integers(1, 10**6))
def test_fraction_stays_integer_and_bounded(amount: int, part: int, whole: int) -> None:
    part = min(part, whole)
    share = Money(amount, "EUR").fraction(part, whole)
    assert isinstance(share.minor, int)
    assert 0 <= share.minor <= amount


@pytest.mark.parametrize(
    ("amount", "percent", "expected"),
    [
        (12_900, "20", 2_580),
        (1_005, "10", 101),
        (-1_005, "10", -101),
        (999, "33.3", 333),
        (0, "50", 0),
    ],
)
def test_percent_of_rounds_half_away_from_zero(amount: int, percent: str, expected: int) -> None:
    assert percent_of(amount, Decimal(percent)) == expected


def test_a_price_breakdown_adds_up_to_the_amount_due() -> None:
    usd = "USD"
    breakdown = PriceBreakdown.of(
        list_amount=Money(2_250, usd),
        total_excluding_tax=Money(1_800, usd),
        tax=Money(180, usd),
        amount_due=Money(1_480, usd),
    )
    assert (breakdown.discounts, breakdown.credit_applied) == (Money(450, usd), Money(500, usd))
    assert (
        breakdown.list_amount - breakdown.discounts + breakdown.tax - breakdown.credit_applied
        == breakdown.amount_due
    )
    assert breakdown.describe() == (
        "list 22.50 USD, discounts -4.50 USD, tax +1.80 USD, credit balance -5.00 USD"
        " = 14.80 USD due"
    )
