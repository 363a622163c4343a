"""`upshift catalog diff OLD NEW`: the changes and their MRR impact on accounts made through the
API, as a table and as JSON; an invalid catalog is refused with the loader's report."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from service.adapters.catalog_loader import load_catalog
from service.cli import main
from service.domain.catalog import CatalogError

REPO = Path(__file__).resolve().parents[2]
OLD = REPO / "pricing_catalog" / "catalog.yaml"

ACCOUNTS: dict[str, dict[str, Any]] = {
    "acct-a": {"tier": "growth", "interval": "month", "seats": 10},
    "acct-b": {"tier": "growth", "interval": "month", "seats": 10},  # acct-a's plan: priced once
    "acct-big": {"tier": "growth", "interval": "month", "seats": 45},
    "acct-audit": {"tier": "growth", "interval": "month", "seats": 5, "addons": {"audit_log": 1}},
    "acct-trial": {"tier": "business", "interval": "year", "seats": 10, "status": "trialing"},
    "acct-gone": {"tier": "starter", "interval": "month", "seats": 3, "status": "canceled"},
}


@pytest.fixture
def new_catalog(tmp_path: Path) -> Path:
    """Growth's monthly base 99.00 -> 109.00, at most 40 seats, no audit-log add-on."""
    document = yaml.safe_load(OLD.read_text())
    growth = document["tiers"]["growth"]
    growth["prices"]["month"]["base"]["amount"] = 10900
    growth["seats"]["max"] = 40
    growth["addons"] = ["api_pack", "projects_pack"]
    document["version"] = "2026-12-01.1"
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def accounts(client: TestClient, admin_headers: dict[str, str]) -> dict[str, int]:
    """The accounts, made through the API; returns each one's MRR as the API reports it."""
    mrr = {}
    for account_id, body in ACCOUNTS.items():
        response = client.put(f"/v1/accounts/{account_id}", json=body, headers=admin_headers)
        assert response.status_code in (200, 201), response.text
        mrr[account_id] = response.json()["mrr"]["amount_minor"]
    return mrr


def diff(database_url: str, *paths: Path, json_output: bool = False) -> Any:
    arguments = ["catalog", "diff", *map(str, paths), "--database-url", database_url]
    return CliRunner().invoke(main, arguments + (["--json"] if json_output else []))


def money(minor: int) -> dict[str, Any]:
    return {"amount_minor": minor, "currency": "USD"}


def test_the_json_report_has_the_changes_the_tiers_and_the_accounts_not_moved(
    accounts: dict[str, int], database_url: str, new_catalog: Path
) -> None:
    result = diff(database_url, OLD, new_catalog, json_output=True)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["old"]["version"] == "2026-11-01.1"
    assert report["new"] == {
        "version": "2026-12-01.1",
        "effective_from": "2026-11-01T00:00:00+00:00",
        "currency": "USD",
    }
    assert [(c["kind"], c["path"], c["before"], c["after"]) for c in report["changes"]] == [
        ("price_changed", "tiers.growth.prices.month.base", money(9900), money(10900)),
        ("seats_changed", "tiers.growth.seats.max", 50, 40),
        ("addon_withdrawn", "tiers.growth.addons", "audit_log", None),
    ]
    impact = report["impact"]
    # Every live account (the canceled one is not), each at the MRR the API reports for it.
    live = [a for a in ACCOUNTS if a != "acct-gone"]
    assert (impact["accounts"], impact["distinct_plans"]) == (5, 4)
    assert impact["mrr_before"] == money(sum(accounts[a] for a in live))
    growth_before = 2 * 17400 + 69900 + 12800  # 9,900 + 15.00 per seat above 5; + audit log
    growth_after = growth_before + 2 * 1000  # only acct-a and acct-b move
    assert impact["tiers"] == [
        {
            "tier": "growth",
            "accounts": 4,
            "accounts_not_moved": 2,
            "mrr_before": money(growth_before),
            "mrr_after": money(growth_after),
            "mrr_change": money(2000),
        },
        {
            "tier": "business",
            "accounts": 1,
            "accounts_not_moved": 0,
            "mrr_before": money(0),
            "mrr_after": money(0),
            "mrr_change": money(0),
        },
    ]
    assert impact["mrr_change"] == money(
        sum(t["mrr_change"]["amount_minor"] for t in impact["tiers"])
    )
    assert impact["mrr_after"] == money(growth_after)
    assert impact["accounts_not_moved"] == [
        {
            "account_id": "acct-audit",
            "plan": {"tier": "growth", "interval": "month", "seats": 5, "addons": {"audit_log": 1}},
            "problems": [
                {
                    "code": "addon_not_allowed",
                    "problem": "add-on 'audit_log' removed",
                    "outcome": "not moved: stays at its OLD price until the add-on is dropped",
                }
            ],
        },
        {
            "account_id": "acct-big",
            "plan": {"tier": "growth", "interval": "month", "seats": 45, "addons": {}},
            "problems": [
                {
                    "code": "seats_out_of_range",
                    "problem": "seats above max 40",
                    "outcome": "not moved: stays at its OLD price until its seats fit the tier",
                }
            ],
        },
    ]


def test_the_table_shows_each_tier_the_total_and_why_accounts_stay(
    accounts: dict[str, int], database_url: str, new_catalog: Path
) -> None:
    result = diff(database_url, OLD, new_catalog)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "catalog 2026-11-01.1 -> 2026-12-01.1 (USD)" in lines
    assert "  tiers.growth.prices.month.base: price changed (99.00 USD -> 109.00 USD)" in lines
    assert [line.split() for line in lines if line.startswith(("  growth", "  total"))] == [
        ["growth", "4", "2", "1,175.00", "1,195.00", "+20.00"],
        ["total", "5", "2", "1,175.00", "1,195.00", "+20.00"],
    ]
    assert (
        "  acct-big  growth/month, 45 seats: seats above max 40; "
        "not moved: stays at its OLD price until its seats fit the tier"
    ) in lines


def test_the_same_catalog_twice_changes_nothing(
    accounts: dict[str, int], database_url: str
) -> None:
    report = json.loads(diff(database_url, OLD, OLD, json_output=True).output)
    assert report["changes"] == []
    assert report["impact"]["mrr_change"] == money(0)
    assert report["impact"]["mrr_before"] == report["impact"]["mrr_after"]
    assert report["impact"]["accounts_not_moved"] == []


def test_an_invalid_new_catalog_is_refused_with_the_loaders_report(
    db: Any, database_url: str, tmp_path: Path
) -> None:
    document = yaml.safe_load(OLD.read_text())
    bad = copy.deepcopy(document)
    bad["tiers"]["growth"]["prices"]["month"]["base"]["amount"] = 99.5
    bad["tiers"]["business"]["upgrades"][0]["to"] = "enterprize"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = diff(database_url, OLD, path)
    assert result.exit_code == 2
    assert (
        "bad.yaml: tiers.growth.prices.month.base.amount: must be an integer of minor units, "
        "got 99.5"
    ) in result.output
    assert "bad.yaml: tiers.business.upgrades[0].to: unknown tier 'enterprize'" in result.output
    with pytest.raises(CatalogError) as loader:
        load_catalog(path)
    assert result.output == f"{loader.value}\n"  # the loader's report, and nothing else


def test_catalogs_in_different_currencies_are_refused(
    db: Any, database_url: str, tmp_path: Path
) -> None:
    document = yaml.safe_load(OLD.read_text())
    document["currency"] = "EUR"
    path = tmp_path / "eur.yaml"
    path.write_text(yaml.safe_dump(document))
    result = diff(database_url, OLD, path)
    assert result.exit_code == 2
    assert "OLD prices in USD, NEW in EUR" in result.output


def test_a_database_without_the_schema_is_a_clean_refusal(tmp_path: Path) -> None:
    result = diff(f"sqlite:///{tmp_path / 'empty.db'}", OLD, OLD)
    assert result.exit_code == 2
    assert result.output == (
        "cannot read the accounts (is the database migrated?): no such table: accounts\n"
    )


def test_accounts_priced_at_another_version_are_not_old_s_to_move(
    accounts: dict[str, int], database_url: str, new_catalog: Path, db: Engine
) -> None:
    """An account grandfathered on another catalog version is not on OLD: left out."""
    with db.begin() as connection:
        connection.execute(
            text("UPDATE accounts SET catalog_version = 'elsewhere' WHERE id = 'acct-b'")
        )
    report = json.loads(diff(database_url, OLD, new_catalog, json_output=True).output)
    growth = next(t for t in report["impact"]["tiers"] if t["tier"] == "growth")
    assert (report["impact"]["accounts"], growth["accounts"]) == (4, 3)
    assert growth["mrr_change"] == money(1000)  # acct-a alone moves
