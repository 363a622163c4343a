"""Money as integer minor units plus an ISO 4217 currency; every rounding rule lives here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

_CURRENCY = re.compile(r"^[A-Z]{3}$")

# Minor-unit exponent per currency, for the decimal columns finance reads. Everything not listed
# has two decimals; zero-decimal currencies are the ones Stripe documents as such.
_ZERO_DECIMAL = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)


class CurrencyMismatchError(ValueError):
    """Two amounts of different currencies were combined."""


def round_half_away(numerator: int, denominator: int) -> int:
    """Divide two integers and round to the nearest integer, halves away from zero.

    Halves away from zero makes rounding symmetric: the credit for a span is exactly the negative
    of the charge for the same span, so an upgrade undone at once nets to zero per line.
    """
    if denominator == 0:
        raise ZeroDivisionError("denominator is zero")
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    quotient, remainder = divmod(abs(numerator), denominator)
    if remainder * 2 >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def minor_exponent(currency: str) -> int:
    """How many decimals the currency's minor unit has."""
    return 0 if currency.upper() in _ZERO_DECIMAL else 2


_VALID_CODES: set[str] = set()  # codes already checked: Money is built on every hot path


def validate_currency(currency: str) -> str:
    """Return the currency code upper-cased, or raise ValueError if it is not ISO 4217 shaped."""
    if currency in _VALID_CODES:
        return currency
    code = currency.upper()
    if not _CURRENCY.match(code):
        raise ValueError(f"currency must be a three-letter ISO 4217 code, got {currency!r}")
    if code == currency:
        _VALID_CODES.add(code)
    return code


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An amount in integer minor units (cents) of one currency."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.minor) is not int:  # exactly int: bool and float are refused
            raise TypeError(f"money must be integer minor units, got {self.minor!r}")
        if self.currency not in _VALID_CODES:
            object.__setattr__(self, "currency", validate_currency(self.currency))

    def as_json(self) -> dict[str, Any]:
        """The wire and storage form: `{"amount_minor": ..., "currency": ...}`."""
        return {"amount_minor": self.minor, "currency": self.currency}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Money:
        return cls(int(document["amount_minor"]), str(document["currency"]))

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatchError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    def times(self, quantity: int) -> Money:
        """The amount for `quantity` units of this unit price."""
        return Money(self.minor * quantity, self.currency)

    def fraction(self, numerator: int, denominator: int) -> Money:
        """This amount scaled by numerator/denominator, rounded half away from zero."""
        return Money(round_half_away(self.minor * numerator, denominator), self.currency)

    def to_decimal(self) -> Decimal:
        """The amount in major units, for spreadsheets; never used for arithmetic."""
        return Decimal(self.minor).scaleb(-minor_exponent(self.currency))

    def __str__(self) -> str:
        return f"{self.to_decimal():f} {self.currency}"


def monthly_from_interval(amount_minor: int, interval_months: int) -> int:
    """Normalize a recurring amount billed every `interval_months` months to one month (MRR).

    Rounded half away from zero; a yearly 1,000 becomes 83 a month. The rounding error is at most
    half a minor unit per line, and MRR is summed from rounded lines, never re-derived.
    """
    return round_half_away(amount_minor, interval_months)


def percent_of(amount_minor: int, percent: Decimal) -> int:
    """`percent` % of an amount in whole minor units, half away from zero (a coupon's
    `percent_off`, given as a decimal so no float ever touches money)."""
    exact = Decimal(amount_minor) * percent / Decimal(100)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
