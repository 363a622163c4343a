"""The catalog refuses to load when anything is wrong, and says exactly where."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.adapters.catalog_loader import load_catalog
from service.domain.catalog import Catalog, CatalogError, Timing, catalog_json_schema

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "pricing_catalog" / "catalog.yaml"


@pytest.fixture
def document() -> dict[str, Any]:
    return yaml.safe_load(CATALOG.read_text())


def errors_of(document: dict[str, Any]) -> str:
    with pytest.raises(CatalogError) as caught:
        Catalog.parse(document)
    return str(caught.value)


def test_bundled_catalog_is_realistic() -> None:
    catalog = load_catalog(CATALOG)
    self_serve = [t for t in catalog.tiers.values() if t.self_serve]
    assert len(self_serve) >= 3
    assert any(not t.self_serve for t in catalog.tiers.values())
    assert all({"month", "year"} <= set(t.prices) for t in self_serve)
    kinds = {f.kind.value for f in catalog.features.values()}
    assert {"capacity", "metered", "boolean"} <= kinds
    assert {a.kind.value for a in catalog.addons.values()} == {"usage_pack", "feature"}
    timings = {p.timing for t in catalog.tiers.values() for p in (*t.upgrades, *t.downgrades)}
    assert {Timing.immediate, Timing.end_of_term, Timing.sales_assisted} <= timings
    percents = {(t.feature, t.at_percent) for t in catalog.thresholds}
    assert {("api_calls", 80), ("api_calls", 100), ("seats", 85)} <= percents


def test_unknown_upgrade_target_names_file_and_path(tmp_path: Path, document: dict) -> None:
    document["tiers"]["growth"]["upgrades"][0]["to"] = "enterprize"
    bad = tmp_path / "catalog.yaml"
    bad.write_text(yaml.safe_dump(document))
    with pytest.raises(CatalogError) as caught:
        load_catalog(bad)
    assert "catalog.yaml: tiers.growth.upgrades[0].to: unknown tier 'enterprize'" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["tiers"]["starter"]["prices"]["month"]["base"].update(amount=29.0),
            "tiers.starter.prices.month.base.amount: must be an integer of minor units",
        ),
        (
            lambda d: d["tiers"]["starter"]["prices"]["month"]["base"].update(amount=-1),
            "tiers.starter.prices.month.base.amount: Input should be greater than or equal to 0",
        ),
        (
            lambda d: d["tiers"]["growth"]["upgrades"].append({"to": "starter"}),
            "tiers.growth.upgrades[2].to: upgrade target 'starter' must rank above 'growth'",
        ),
        (
            lambda d: d["tiers"]["growth"]["downgrades"].append({"to": "business"}),
            "tiers.growth.downgrades[1].to: downgrade target 'business' must rank below 'growth'",
        ),
        (
            lambda d: d["tiers"]["growth"]["prices"]["year"]["seat"].update(
                lookup_key="relay_growth_seat_month"
            ),
            "tiers.growth.prices.year.seat.lookup_key: lookup_key 'relay_growth_seat_month' "
            "is already used at tiers.growth.prices.month.seat",
        ),
        (
            lambda d: d["tiers"]["starter"]["limits"].update(sso=3),
            "tiers.starter.limits.sso: feature 'sso' is boolean",
        ),
        (
            lambda d: d["tiers"]["starter"]["limits"].update(projects=True),
            "tiers.starter.limits.projects: feature 'projects' is capacity",
        ),
        (
            lambda d: d["tiers"]["starter"]["limits"].update(storage=5),
            "tiers.starter.limits.storage: unknown feature 'storage'",
        ),
        (
            lambda d: d["tiers"]["starter"]["addons"].append("sso_pack"),
            "tiers.starter.addons[2]: unknown add-on 'sso_pack'",
        ),
        (
            lambda d: d["tiers"]["starter"].update(colour="red"),
            "tiers.starter.colour: unknown field",
        ),
        (
            lambda d: d["addons"]["api_pack"]["grants"].update(sso=True),
            "addons.api_pack.grants.sso: a usage pack grants a positive amount",
        ),
        (
            lambda d: d["thresholds"][0].update(feature="api_callz"),
            "thresholds[0].feature: unknown feature 'api_callz'",
        ),
        (
            lambda d: d["tiers"]["growth"]["seats"].update(max=2),
            "tiers.growth.seats.max: must be >= seats.included",
        ),
        (
            lambda d: d["tiers"]["growth"].update(rank=10),
            "tiers.growth.rank: rank 10 already used by 'starter'",
        ),
        (
            lambda d: d["tiers"]["growth"]["upgrades"][1].update(timing="immediate"),
            "tiers.growth.upgrades[1].timing: 'enterprise' is sales-assisted",
        ),
        (
            lambda d: d["tiers"]["starter"]["prices"]["month"].pop("seat"),
            "tiers.starter.prices.month.seat: required",
        ),
        (lambda d: d.update(currency="usd"), "currency: String should match pattern"),
    ],
)
def test_bad_catalogs_name_the_spot(document: dict, mutate: Any, expected: str) -> None:
    broken = copy.deepcopy(document)
    mutate(broken)
    assert expected in errors_of(broken)


def test_all_problems_are_reported_at_once(document: dict) -> None:
    document["tiers"]["growth"]["upgrades"][0]["to"] = "enterprize"
    document["tiers"]["starter"]["addons"].append("nope")
    message = errors_of(document)
    assert "unknown tier 'enterprize'" in message
    assert "unknown add-on 'nope'" in message


def test_schema_and_cross_reference_problems_are_reported_together(document: dict) -> None:
    document["tiers"]["starter"]["prices"]["month"]["base"]["amount"] = 29.0  # schema
    document["tiers"]["growth"]["upgrades"][0]["to"] = "enterprize"  # reference
    document["tiers"]["business"]["limits"]["widgets"] = 5  # reference
    document["addons"]["api_pack"]["prices"]["month"]["lookup_key"] = 7  # schema
    document["currency"] = "usd"  # schema
    message = errors_of(document)
    lines = message.splitlines()
    assert "tiers.starter.prices.month.base.amount: must be an integer of minor units" in message
    assert "addons.api_pack.prices.month.lookup_key" in message
    assert "tiers.growth.upgrades[0].to: unknown tier 'enterprize'" in lines
    assert "tiers.business.limits.widgets: unknown feature 'widgets'" in lines
    # What the schema already reported is not reported again as a reference to something unknown
    # (starter and api_pack exist; they are invalid), nor twice at the same spot.
    assert not [line for line in lines if "'starter'" in line or "'api_pack'" in line]
    assert len([line for line in lines if line.startswith("currency")]) == 1


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("tiers:\n  starter: [\n")
    with pytest.raises(CatalogError, match=r"^broken.yaml: line \d+, column \d+: invalid YAML"):
        load_catalog(bad)


def test_add_on_grants_raise_limits() -> None:
    catalog = load_catalog(CATALOG)
    assert catalog.limit("growth", "api_calls", {}) == 100_000
    assert catalog.limit("growth", "api_calls", {"api_pack": 2}) == 300_000
    assert catalog.limit("growth", "audit_log", {"audit_log": 1}) is True
    assert catalog.limit("business", "projects", {}) is None


def test_committed_schema_matches_the_model() -> None:
    committed = json.loads((REPO / "pricing_catalog" / "catalog.schema.json").read_text())
    assert committed == catalog_json_schema(), "run `upshift catalog schema` and commit the result"


# -- versions (issue 16) ------------------------------------------------------------------------


def _version_file(folder: Path, name: str, **changes: Any) -> None:
    document = yaml.safe_load(CATALOG.read_text())
    document.update(changes)
    (folder / name).write_text(yaml.safe_dump(document))


def test_the_bundled_directory_holds_two_versions_in_order() -> None:
    from datetime import UTC, datetime

    from service.adapters.catalog_loader import load_catalogs

    history = load_catalogs(REPO / "pricing_catalog")
    assert history.names == ("2026-11-01.1", "2026-12-01.1")
    assert (
        history.in_force(datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)).version == "2026-11-01.1"
    )
    assert history.in_force(datetime(2026, 12, 1, tzinfo=UTC)).version == "2026-12-01.1"
    # Before the first version takes effect, the first one prices.
    assert history.in_force(datetime(2020, 1, 1, tzinfo=UTC)).version == "2026-11-01.1"
    latest = history.latest
    assert latest.at_version("2026-11-01.1").tiers["growth"].prices["month"].base.amount == 9_900
    assert latest.tiers["growth"].prices["month"].base.amount == 11_900


def test_versions_that_cannot_live_together_are_refused_naming_file_and_spot(
    tmp_path: Path,
) -> None:
    from service.adapters.catalog_loader import load_catalogs

    _version_file(tmp_path, "a.yaml")
    document = yaml.safe_load(CATALOG.read_text())
    document["version"] = "2026-11-01.1"  # the same version again
    document["currency"] = "EUR"
    document["tiers"]["starter"]["prices"]["month"]["base"]["amount"] = 3_900  # same lookup key
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(CatalogError) as caught:
        load_catalogs(tmp_path)
    report = str(caught.value)
    assert "b.yaml: version: version '2026-11-01.1' is already in a.yaml" in report
    assert "b.yaml: effective_from:" in report
    assert "b.yaml: currency: every version bills in USD" in report
    assert (
        "b.yaml: tiers.starter.prices.month.base.lookup_key: 'relay_starter_base_month' is 2900 "
        "per month at a.yaml: tiers.starter.prices.month.base; a new amount is a new price"
    ) in report


def test_an_invalid_version_file_is_reported_with_its_name(tmp_path: Path) -> None:
    from service.adapters.catalog_loader import load_catalogs

    _version_file(tmp_path, "good.yaml")
    (tmp_path / "bad.yaml").write_text("version: x\n")
    with pytest.raises(CatalogError) as caught:
        load_catalogs(tmp_path)
    assert "bad.yaml: effective_from: Field required" in str(caught.value)
