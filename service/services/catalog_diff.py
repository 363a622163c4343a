"""`catalog diff` as a use case: two catalogs compared, and the MRR impact of moving every live
account from the old one to the new one, each distinct plan priced once."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Engine

from service.adapters.account_plans import stream_account_plans
from service.domain.accounts import Plan, pays
from service.domain.catalog import Catalog, Interval
from service.domain.catalog_diff import (
    CatalogChange,
    CatalogImpact,
    PlanGroup,
    PricedPlan,
    diff_catalogs,
    price_plan,
    project_impact,
)


@dataclass(frozen=True, slots=True)
class CatalogDiff:
    old: Catalog
    new: Catalog
    changes: tuple[CatalogChange, ...]
    impact: CatalogImpact


def diff_against_accounts(
    engine: Engine, old: Catalog, new: Catalog, *, batch_size: int = 10_000
) -> CatalogDiff:
    """What changed from OLD to NEW, and what it does to the live accounts priced at OLD's
    version (grandfathered accounts on other versions are not OLD's to move). Reads the
    accounts in one streaming query; raises CurrencyMismatchError when the catalogs'
    currencies differ."""
    changes = diff_catalogs(old, new)
    # (tier, interval, seats, add-ons JSON, status) -> the accounts on that plan
    groups: dict[tuple[object, ...], _Group] = {}
    with engine.connect() as connection:
        batches = stream_account_plans(
            connection, batch_size=batch_size, catalog_version=old.version
        )
        for batch in batches:
            for row in batch:
                key = tuple(row[1:])
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _Group(_price(old, new, key))
                group.accounts += 1
                if group.stuck is not None:
                    group.stuck.append(row[0])
    impact = project_impact(
        old,
        new,
        (PlanGroup(g.priced, g.accounts, tuple(g.stuck or ())) for g in groups.values()),
    )
    return CatalogDiff(old, new, changes, impact)


@dataclass(slots=True)
class _Group:
    priced: PricedPlan
    accounts: int = 0
    stuck: list[str] | None = None  # the ids, only of accounts whose plan does not move

    def __post_init__(self) -> None:
        if not self.priced.moves:
            self.stuck = []


def _price(old: Catalog, new: Catalog, key: tuple[object, ...]) -> PricedPlan:
    tier, interval, seats, addons, status = key
    plan = Plan(
        tier=str(tier),
        interval=Interval(str(interval)),
        seats=int(str(seats)),
        addons={str(k): int(v) for k, v in json.loads(str(addons or "{}")).items()},
    )
    return price_plan(old, new, plan, paying=pays(str(status)))
