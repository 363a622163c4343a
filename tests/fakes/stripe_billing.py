"""Pure billing arithmetic for the fake Stripe server (no state, no I/O).

* Periods are anchor based: boundary ``k`` of an anchor is ``anchor + k * interval``,
  computed from the anchor every time, with the day of month clamped to the
  month's end (Jan 31 + 1 month = Feb 28/29, + 2 months = Mar 31).
* Prorations are by the second and rounded to the integer minor unit, half away
  from zero, per line and before any summing: ``round(amount * remaining / span)``.
* Money is always an ``int`` of minor units; time is unix seconds, UTC.
"""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

__all__ = [
    "ZERO_DECIMAL_CURRENCIES",
    "boundary",
    "format_date",
    "format_money",
    "interval_label",
    "percent_of",
    "prorate",
    "round_half_away",
]

_SECONDS = {"day": 86_400, "week": 7 * 86_400}
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd",
     "vuv", "xaf", "xof", "xpf"}
)  # fmt: skip
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$"}


def _utc(ts: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _add_months(anchor: dt.datetime, months: int) -> dt.datetime:
    total = anchor.year * 12 + (anchor.month - 1) + months
    year, month0 = divmod(total, 12)
    day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
    return anchor.replace(year=year, month=month0 + 1, day=day)


def boundary(anchor: int, interval: str, interval_count: int, k: int) -> int:
    """The ``k``-th period boundary of a billing cycle anchored at ``anchor`` (k may be < 0)."""
    steps = k * interval_count
    if interval in _SECONDS:
        return anchor + steps * _SECONDS[interval]
    if interval == "month":
        return int(_add_months(_utc(anchor), steps).timestamp())
    if interval == "year":
        return int(_add_months(_utc(anchor), 12 * steps).timestamp())
    raise ValueError(f"unknown interval {interval!r}")


def round_half_away(numerator: int, denominator: int) -> int:
    """``round(numerator / denominator)`` with halves rounded away from zero, in integers."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    magnitude = (2 * abs(numerator) + denominator) // (2 * denominator)
    return -magnitude if numerator < 0 else magnitude


def prorate(amount: int, start: int, end: int, at: int) -> int:
    """The share of ``amount`` (billed for ``[start, end)``) for the time ``[at, end)``."""
    if end <= start:
        return 0
    at = max(start, min(at, end))
    return round_half_away(amount * (end - at), end - start)


def percent_of(amount: int, percent: Decimal) -> int:
    """``percent`` % of ``amount`` in whole minor units, half away from zero (a coupon's
    ``percent_off`` of a line, a tax rate's ``percentage`` of a taxable amount)."""
    exact = Decimal(amount) * percent / Decimal(100)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_money(amount: int, currency: str) -> str:
    """``1000, "usd"`` -> ``"$10.00"`` (the form Stripe uses in line descriptions)."""
    cur = currency.lower()
    sign = "-" if amount < 0 else ""
    if cur in ZERO_DECIMAL_CURRENCIES:
        number = f"{abs(amount):,}"
    else:
        number = f"{abs(amount) // 100:,}.{abs(amount) % 100:02d}"
    symbol = _SYMBOLS.get(cur)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {cur.upper()}"


def interval_label(interval: str, interval_count: int) -> str:
    """``("month", 1)`` -> ``"month"``; ``("month", 3)`` -> ``"every 3 months"``."""
    return interval if interval_count == 1 else f"every {interval_count} {interval}s"


def format_date(ts: int) -> str:
    """``1794787200`` -> ``"16 Nov 2026"`` (UTC)."""
    moment = _utc(ts)
    return f"{moment.day} {moment.strftime('%b %Y')}"
