"""The MRR of a Stripe subscription as the ledger records it: after forever coupons, per month."""

from __future__ import annotations

from typing import Any

import pytest

from service.adapters.stripe_api import subscription_mrr
from service.domain.money import Money


def subscription(interval: str, *items: tuple[int, int], discounts: list[Any] = ()) -> Any:
    return {
        "id": "sub_1",
        "items": {
            "data": [
                {
                    "quantity": quantity,
                    "price": {
                        "unit_amount": amount,
                        "recurring": {"interval": interval, "interval_count": 1},
                    },
                }
                for amount, quantity in items
            ]
        },
        "discounts": list(discounts),
    }


def discount(duration: str, **off: Any) -> dict[str, Any]:
    return {"id": "di_1", "source": {"type": "coupon", "coupon": {"duration": duration, **off}}}


def test_items_are_normalized_to_a_month_each() -> None:
    yearly = subscription("year", (99_000, 1), (15_000, 2))
    assert subscription_mrr(yearly, "USD") == Money(8_250 + 2_500, "USD")
    assert subscription_mrr(subscription("month", (9_900, 1), (1_500, 0)), "EUR").minor == 9_900


@pytest.mark.parametrize(
    ("coupon", "mrr"),
    [
        (discount("forever", percent_off=20.0), 12_900 - 2_580),
        (discount("forever", amount_off=1_000, currency="usd"), 12_900 - 1_000),
        (discount("forever", amount_off=1_000, currency="eur"), 12_900),  # not this currency's
        (discount("once", percent_off=50.0), 12_900),
        (discount("repeating", percent_off=50.0, duration_in_months=3), 12_900),
    ],
)
def test_only_forever_coupons_lower_mrr(coupon: dict[str, Any], mrr: int) -> None:
    sub = subscription("month", (9_900, 1), (1_500, 2), discounts=[coupon])
    assert subscription_mrr(sub, "USD") == Money(mrr, "USD")


def test_an_amount_off_a_yearly_invoice_is_a_twelfth_a_month() -> None:
    sub = subscription(
        "year", (120_000, 1), discounts=[discount("forever", amount_off=12_000, currency="usd")]
    )
    assert subscription_mrr(sub, "USD").minor == 10_000 - 1_000


def test_discounts_must_be_expanded() -> None:
    with pytest.raises(ValueError, match="expanded"):
        subscription_mrr(subscription("month", (100, 1), discounts=["di_1"]), "USD")
