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
    round_half_away,
)


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
