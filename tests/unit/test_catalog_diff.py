"""Catalog diffs: every change between two catalogs, and the MRR and validity of plans moved."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.accounts import Plan
from service.domain.catalog import Catalog, Interval
from service.domain.catalog_diff import (
    CatalogChange,
    ChangeKind,
    PlanGroup,
    diff_catalogs,
    price_plan,
    project_impact,
)
from service.domain.money import CurrencyMismatchError, Money
from service.domain.quotes import plan_mrr

CATALOG = Path(__file__).resolve().parents[2] / "pricing_catalog" / "catalog.yaml"
DOCUMENT: dict[str, Any] = yaml.safe_load(CATALOG.read_text())
OLD = Catalog.parse(DOCUMENT)


def usd(minor: int) -> Money:
    return Money(minor, "USD")


def edited() -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    document["version"] = "2026-12-01.1"
    return document


def without_starter() -> dict[str, Any]:
    document = edited()
    del document["tiers"]["starter"]
    for tier in ("growth", "business"):
        document["tiers"][tier]["downgrades"] = [
            p for p in document["tiers"][tier]["downgrades"] if p["to"] != "starter"
        ]
    return document


def test_a_catalog_has_no_changes_from_itself() -> None:
    assert diff_catalogs(OLD, OLD) == ()


def test_a_raised_price_is_one_change_in_minor_units() -> None:
    document = edited()
    document["tiers"]["growth"]["prices"]["month"]["seat"]["amount"] = 1700
    assert diff_catalogs(OLD, Catalog.parse(document)) == (
        CatalogChange(
            ChangeKind.price_changed, "tiers.growth.prices.month.seat", usd(1500), usd(1700)
        ),
    )


def test_tiers_limits_seats_paths_and_addons_that_change_are_each_named() -> None:
    document = without_starter()
    growth = document["tiers"]["growth"]
    growth["seats"]["max"] = 40
    growth["limits"]["projects"] = None
    growth["limits"]["sso"] = True
    growth["addons"] = ["api_pack", "projects_pack"]
    growth["upgrades"][0]["timing"] = "end_of_term"
    del document["tiers"]["business"]["prices"]["year"]
    document["addons"]["api_pack"]["prices"]["month"]["lookup_key"] = "relay_api_pack_month_v2"
    document["addons"]["api_pack"]["max_quantity"] = 5
    changes = {
        (c.kind, c.path, c.before, c.after) for c in diff_catalogs(OLD, Catalog.parse(document))
    }
    assert changes == {
        (ChangeKind.tier_removed, "tiers.starter", "Starter", None),
        (ChangeKind.seats_changed, "tiers.growth.seats.max", 50, 40),
        (ChangeKind.limit_changed, "tiers.growth.limits.projects", 50, None),
        (ChangeKind.limit_changed, "tiers.growth.limits.sso", False, True),
        (ChangeKind.addon_withdrawn, "tiers.growth.addons", "audit_log", None),
        (
            ChangeKind.path_timing_changed,
            "tiers.growth.upgrades.business",
            "immediate",
            "end_of_term",
        ),
        (ChangeKind.path_removed, "tiers.growth.downgrades.starter", "end_of_term", None),
        (ChangeKind.path_removed, "tiers.business.downgrades.starter", "end_of_term", None),
        (ChangeKind.price_removed, "tiers.business.prices.year.base", usd(299000), None),
        (ChangeKind.price_removed, "tiers.business.prices.year.seat", usd(25000), None),
        (
            ChangeKind.lookup_key_changed,
            "addons.api_pack.prices.month.lookup_key",
            "relay_api_pack_month",
            "relay_api_pack_month_v2",
        ),
        (ChangeKind.addon_max_quantity_changed, "addons.api_pack.max_quantity", 10, 5),
    }


def test_added_tiers_addons_and_their_offers_are_named() -> None:
    document = edited()
    document["addons"]["priority_support"] = {
        "name": "Priority support",
        "kind": "feature",
        "grants": {"sso": True},
        "prices": {
            "month": {"amount": 5000, "lookup_key": "relay_support_month"},
            "year": {"amount": 50000, "lookup_key": "relay_support_year"},
        },
    }
    document["tiers"]["business"]["addons"].append("priority_support")
    changes = {(c.kind, c.path) for c in diff_catalogs(OLD, Catalog.parse(document))}
    assert changes == {
        (ChangeKind.addon_added, "addons.priority_support"),
        (ChangeKind.addon_offered, "tiers.business.addons"),
    }


def test_a_valid_plan_moves_to_the_new_price() -> None:
    document = edited()
    document["tiers"]["growth"]["prices"]["year"]["base"]["amount"] = 120000
    plan = Plan("growth", Interval.year, 7, {"api_pack": 2})
    priced = price_plan(OLD, Catalog.parse(document), plan, paying=True)
    # Yearly 99,000 + 2 × 15,000 + 2 × 49,000 = 227,000 -> 18,917 a month; then 248,000 -> 20,667.
    assert (priced.mrr_before, priced.mrr_after, priced.problems) == (usd(18917), usd(20667), ())
    assert priced.mrr_before == plan_mrr(OLD, plan)


def test_a_plan_that_does_not_pay_has_no_mrr_on_either_side() -> None:
    priced = price_plan(OLD, OLD, Plan("growth", Interval.month, 9), paying=False)
    assert (priced.mrr_before, priced.mrr_after, priced.moves) == (usd(0), usd(0), True)


@pytest.mark.parametrize(
    ("edit", "plan", "code", "words"),
    [
        (lambda d: d, Plan("starter", Interval.month, 3), "unknown_tier", "tier removed"),
        (
            lambda d: d["tiers"]["growth"]["seats"].update(max=40),
            Plan("growth", Interval.month, 45),
            "seats_out_of_range",
            "seats above max 40",
        ),
        (
            lambda d: d["tiers"]["growth"].update(addons=["api_pack"]),
            Plan("growth", Interval.month, 5, {"audit_log": 1}),
            "addon_not_allowed",
            "add-on 'audit_log' removed",
        ),
        (
            lambda d: d["tiers"]["business"]["prices"].pop("month"),
            Plan("business", Interval.month, 10),
            "interval_not_offered",
            "monthly billing no longer sold",
        ),
        (
            lambda d: d["addons"]["api_pack"].update(max_quantity=2),
            Plan("growth", Interval.month, 5, {"api_pack": 3}),
            "addon_quantity_out_of_range",
            "add-on 'api_pack' above max quantity 2",
        ),
    ],
)
def test_a_plan_the_new_catalog_cannot_take_keeps_its_old_mrr_and_says_why(
    edit: Any, plan: Plan, code: str, words: str
) -> None:
    document = without_starter()
    edit(document)
    priced = price_plan(OLD, Catalog.parse(document), plan, paying=True)
    assert [(p.code, p.problem) for p in priced.problems] == [(code, words)]
    assert priced.problems[0].outcome
    assert not priced.moves
    assert priced.mrr_after == priced.mrr_before == plan_mrr(OLD, plan)


def test_a_plan_old_does_not_sell_is_not_counted() -> None:
    priced = price_plan(OLD, OLD, Plan("solo", Interval.month, 1), paying=True)
    assert [p.code for p in priced.problems] == ["not_on_old"]
    assert (priced.mrr_before, priced.mrr_after, priced.counted) == (usd(0), usd(0), False)


def test_catalogs_in_two_currencies_are_not_compared() -> None:
    document = edited()
    document["currency"] = "EUR"
    with pytest.raises(CurrencyMismatchError):
        price_plan(OLD, Catalog.parse(document), Plan("growth", Interval.month, 5), paying=True)


def test_the_impact_sums_each_group_once_per_account_and_per_tier() -> None:
    document = without_starter()
    document["tiers"]["growth"]["prices"]["month"]["base"]["amount"] = 10900
    new = Catalog.parse(document)
    growth = price_plan(OLD, new, Plan("growth", Interval.month, 5), paying=True)
    trial = price_plan(OLD, new, Plan("growth", Interval.month, 5), paying=False)
    starter = price_plan(OLD, new, Plan("starter", Interval.month, 3), paying=True)
    impact = project_impact(
        OLD,
        new,
        [
            PlanGroup(growth, 3),
            PlanGroup(trial, 2),
            PlanGroup(starter, 2, ("acct-s1", "acct-s2")),
        ],
    )
    by_tier = {t.tier: t for t in impact.tiers}
    assert [t.tier for t in impact.tiers] == ["starter", "growth"]
    assert (by_tier["growth"].accounts, by_tier["growth"].accounts_not_moved) == (5, 0)
    assert (by_tier["growth"].mrr_before, by_tier["growth"].mrr_after) == (usd(29700), usd(32700))
    assert (by_tier["starter"].accounts_not_moved, by_tier["starter"].mrr_change) == (2, usd(0))
    assert [a.account_id for a in impact.stuck] == ["acct-s1", "acct-s2"]
    assert (impact.accounts, impact.distinct_plans) == (7, 3)
    assert impact.mrr_before == usd(29700 + 2 * 2900)
    assert impact.mrr_change == usd(3000)


# -- properties ---------------------------------------------------------------------------------


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """A plan the bundled catalog sells."""
    key = draw(st.sampled_from([k for k, t in OLD.tiers.items() if t.self_serve]))
    tier = OLD.tiers[key]
    addons = draw(
        st.dictionaries(
            st.sampled_from(tier.addons),
            st.integers(1, 2),
            max_size=len(tier.addons),
        )
    )
    return Plan(
        key,
        draw(st.sampled_from(list(Interval))),
        draw(st.integers(tier.seats.included, tier.seats.max)),
        {k: min(q, OLD.addons[k].max_quantity) for k, q in addons.items()},
    )


@st.composite
def repriced(draw: st.DrawFn) -> Catalog:
    """The bundled catalog with some of its prices changed."""
    document = copy.deepcopy(DOCUMENT)
    for tier in document["tiers"].values():
        for price in tier.get("prices", {}).values():
            for line in price.values():
                line["amount"] = draw(st.integers(0, 10**7))
    for addon in document["addons"].values():
        for line in addon["prices"].values():
            line["amount"] = draw(st.integers(0, 10**7))
    return Catalog.parse(document)


@settings(max_examples=60, deadline=None)
@given(plan=plans(), paying=st.booleans())
def test_a_move_to_the_same_catalog_changes_nothing(plan: Plan, paying: bool) -> None:
    priced = price_plan(OLD, OLD, plan, paying=paying)
    assert priced.moves and priced.mrr_after == priced.mrr_before


@settings(max_examples=60, deadline=None)
@given(new=repriced(), groups=st.lists(st.tuples(plans(), st.integers(1, 1000)), max_size=8))
def test_moving_accounts_there_and_back_nets_to_zero_and_tiers_sum_to_the_total(
    new: Catalog, groups: list[tuple[Plan, int]]
) -> None:
    there = project_impact(
        OLD, new, [PlanGroup(price_plan(OLD, new, p, paying=True), n) for p, n in groups]
    )
    back = project_impact(
        new, OLD, [PlanGroup(price_plan(new, OLD, p, paying=True), n) for p, n in groups]
    )
    assert there.mrr_change + back.mrr_change == usd(0)
    assert there.mrr_before == usd(sum(plan_mrr(OLD, p).minor * n for p, n in groups))
    assert there.mrr_after == usd(sum(plan_mrr(new, p).minor * n for p, n in groups))
    assert sum(t.mrr_change.minor for t in there.tiers) == there.mrr_change.minor
    assert there.accounts == sum(n for _, n in groups)


@settings(max_examples=60, deadline=None)
@given(new=repriced())
def test_a_repricing_is_exactly_its_changed_prices_and_none_back_to_itself(new: Catalog) -> None:
    changed = {
        path: (OLD.money(price.amount), new.money(dict(new.all_prices())[path].amount))
        for path, price in OLD.all_prices()
        if price.amount != dict(new.all_prices())[path].amount
    }
    changes = diff_catalogs(OLD, new)
    assert {c.path: (c.before, c.after) for c in changes} == changed
    assert {c.kind for c in changes} <= {ChangeKind.price_changed}
    assert diff_catalogs(new, new) == ()
