"""`upshift catalog sync-stripe`: a dry-run plan, an idempotent apply, immutable prices moved."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from service.adapters.catalog_loader import load_catalog
from service.adapters.stripe_setup import StripeCatalogStore
from service.cli import main
from service.services.stripe_sync import desired_catalog, plan_sync
from tests.conftest import CATALOG_PATH
from tests.fakes.stripe_server import FakeStripe

PRODUCTS = 6  # starter, growth, business (enterprise has no list price) + 3 add-ons
PRICES = 18  # 3 tiers x 2 intervals x (base + seat) + 3 add-ons x 2 intervals


@pytest.fixture
def sync(fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("UPSHIFT_STRIPE_SECRET_KEY", fake_stripe.api_key)
    monkeypatch.setenv("UPSHIFT_STRIPE_API_BASE", fake_stripe.base_url)
    monkeypatch.setenv("UPSHIFT_CATALOG_PATH", str(CATALOG_PATH))

    def run(*args: str) -> Result:
        result = CliRunner().invoke(main, ["catalog", "sync-stripe", *args])
        assert result.exit_code == 0, result.output
        return result

    return run


def writes(fake: FakeStripe) -> list[str]:
    return [f"{r.method} {r.path}" for r in fake.requests if r.method != "GET"]


def test_dry_run_prints_the_plan_and_changes_nothing(sync, fake_stripe: FakeStripe) -> None:
    result = sync()
    assert "(dry run)" in result.output
    assert "+ product upshift_tier_growth (Growth)" in result.output
    assert "+ price relay_growth_base_month: 99.00 USD / month on upshift_tier_growth" in (
        result.output
    )
    assert f"{PRODUCTS + PRICES} changes planned" in result.output
    assert "--apply" in result.output
    assert writes(fake_stripe) == []


def test_apply_creates_then_reapplying_is_a_no_op(sync, fake_stripe: FakeStripe) -> None:
    applied = sync("--apply")
    assert f"made {PRODUCTS + PRICES} changes" in applied.output
    sdk = fake_stripe.client()
    growth = sdk.v1.products.retrieve("upshift_tier_growth")
    assert (growth.name, growth.metadata["upshift_kind"]) == ("Growth", "tier")
    [price] = sdk.v1.prices.list(params={"lookup_keys": ["relay_growth_seat_year"]}).data
    assert (price.unit_amount, price.currency, price.recurring.interval) == (15_000, "usd", "year")
    assert (price.product, price.metadata["upshift_lookup_key"]) == (
        "upshift_tier_growth",
        "relay_growth_seat_year",
    )
    assert all(r.idempotency_key for r in fake_stripe.requests if r.op and "create" in r.op)

    before = len(writes(fake_stripe))
    again = sync("--apply")
    assert f"nothing to do: {PRODUCTS} products and {PRICES} prices already match" in again.output
    assert len(writes(fake_stripe)) == before


def test_a_changed_amount_is_a_new_price_that_takes_the_lookup_key(
    sync, fake_stripe: FakeStripe, tmp_path: Path
) -> None:
    sync("--apply")
    sdk = fake_stripe.client()
    [old] = sdk.v1.prices.list(params={"lookup_keys": ["relay_growth_base_month"]}).data
    document = yaml.safe_load(CATALOG_PATH.read_text())
    document["tiers"]["growth"]["prices"]["month"]["base"]["amount"] = 10_900
    document["version"] = "2026-12-01.1"
    changed = tmp_path / "catalog.yaml"
    changed.write_text(yaml.safe_dump(document))

    dry = sync("--catalog", str(changed))
    assert (
        "~ price relay_growth_base_month: 99.00 USD / month -> 109.00 USD / month: a new price "
        f"takes the lookup key from {old.id}, which is archived"
    ) in dry.output
    assert "1 change planned" in dry.output

    sync("--catalog", str(changed), "--apply")
    [new] = sdk.v1.prices.list(params={"lookup_keys": ["relay_growth_base_month"]}).data
    assert new.id != old.id and new.unit_amount == 10_900
    archived = sdk.v1.prices.retrieve(old.id)
    assert (archived.active, archived.lookup_key) == (False, None)
    # The old price still names its line, so subscriptions on it keep mapping to the catalog.
    assert archived.metadata["upshift_lookup_key"] == "relay_growth_base_month"
    assert "nothing to do" in sync("--catalog", str(changed)).output


def test_plan_is_a_pure_diff(fake_stripe: FakeStripe) -> None:
    catalog = load_catalog(CATALOG_PATH)
    desired = desired_catalog(catalog)
    assert len(desired.products) == PRODUCTS and len(desired.prices) == PRICES
    empty = plan_sync(desired, {}, {})
    assert len(empty.actions) == PRODUCTS + PRICES
    store = StripeCatalogStore(fake_stripe.client())
    assert plan_sync(desired, store.products(["x"]), store.prices(["y"])) == empty


def test_a_renamed_or_archived_product_is_updated(sync, fake_stripe: FakeStripe) -> None:
    sync("--apply")
    sdk = fake_stripe.client()
    sdk.v1.products.update("upshift_addon_api_pack", params={"name": "Old name", "active": False})
    [price] = sdk.v1.prices.list(params={"lookup_keys": ["relay_api_pack_year"]}).data
    sdk.v1.prices.update(price.id, params={"active": False})
    plan = sync().output
    assert "~ product upshift_addon_api_pack: name='API pack (+100,000 calls a month)', " in plan
    assert f"~ price relay_api_pack_year ({price.id}): active=True" in plan
    sync("--apply")
    assert sdk.v1.products.retrieve("upshift_addon_api_pack").active is True
    assert sdk.v1.prices.retrieve(price.id).active is True


def test_without_a_key_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPSHIFT_STRIPE_SECRET_KEY", raising=False)
    result = CliRunner().invoke(main, ["catalog", "sync-stripe"])
    assert result.exit_code == 2
    assert "UPSHIFT_STRIPE_SECRET_KEY" in result.output


def test_every_version_keeps_its_prices_and_a_raised_one_gets_its_own(
    sync, fake_stripe: FakeStripe
) -> None:
    """The bundled directory: 2026-12-01.1 raises Growth monthly under a new lookup key. Both
    prices exist and stay active: accounts grandfathered on 2026-11-01.1 are billed at 99.00."""
    bundled = CATALOG_PATH.parent
    dry = sync("--catalog", str(bundled)).output
    assert "+ price relay_growth_base_month_2026_12" in dry
    sync("--catalog", str(bundled), "--apply")
    sdk = fake_stripe.client()
    keys = ["relay_growth_base_month", "relay_growth_base_month_2026_12"]
    found = {p.lookup_key: p for p in sdk.v1.prices.list(params={"lookup_keys": keys}).data}
    assert {key: (p.unit_amount, p.active) for key, p in found.items()} == {
        "relay_growth_base_month": (9_900, True),
        "relay_growth_base_month_2026_12": (11_900, True),
    }
    assert (
        "nothing to do: 6 products and 19 prices already match"
        in sync("--catalog", str(bundled)).output
    )
