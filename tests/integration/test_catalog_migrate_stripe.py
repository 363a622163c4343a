"""`upshift catalog migrate` in Stripe mode (issue 16, point 4): a Stripe-billed account moves
to the later version through its subscription, with the real SDK against the Stripe double. At
once, Stripe prorates the swapped price exactly as the dry run quoted it and the ledger books one
`price_uplift` movement; at the end of the term, a subscription schedule moves it at renewal and
Stripe's webhook books the movement. Nothing moves twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from service.api.app import create_app
from service.cli import main
from service.settings import Settings
from tests.conftest import CATALOG_PATH
from tests.fakes.stripe_server import FakeStripe
from tests.integration.test_stripe_versions import NEW, OLD
from tests.stripe_fixtures_app import GROWTH_7, StripeWorld, assert_books_balance, ledger_rows

BUNDLED = CATALOG_PATH.parent  # both bundled versions; NEW raises Growth monthly 99 -> 119
pytest_plugins = ["tests.integration.test_stripe_versions"]  # the `versioned` Stripe world


@pytest.fixture
def settings_env(database_url: str, fake_stripe: FakeStripe) -> dict[str, str]:
    return {
        "UPSHIFT_DATABASE_URL": database_url,
        "UPSHIFT_CATALOG_PATH": str(BUNDLED),
        "UPSHIFT_BILLING_BACKEND": "stripe",
        "UPSHIFT_STRIPE_SECRET_KEY": fake_stripe.api_key,
        "UPSHIFT_STRIPE_API_BASE": fake_stripe.base_url,
        "UPSHIFT_STRIPE_WEBHOOK_SECRET": fake_stripe.webhook_secret,
        "UPSHIFT_TOKEN_SECRET": "test-token-secret",
    }


@pytest.fixture
def http(
    db: Engine, settings_env: dict[str, str], versioned: StripeWorld, database_url: str
) -> Iterator[TestClient]:
    """The service in Stripe mode on the bundled versions, at the world's clock (OLD in force)."""
    world = versioned
    assert world.clock.now() < datetime(2026, 12, 1, tzinfo=UTC)
    settings = Settings(
        database_url=database_url,
        catalog_path=BUNDLED,
        token_secret=SecretStr("test-token-secret"),
        billing_backend="stripe",
        stripe_secret_key=SecretStr(settings_env["UPSHIFT_STRIPE_SECRET_KEY"]),
        stripe_api_base=settings_env["UPSHIFT_STRIPE_API_BASE"],
        stripe_webhook_secret=SecretStr(settings_env["UPSHIFT_STRIPE_WEBHOOK_SECRET"]),
    )
    app = create_app(settings, clock=world.clock, engine=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def migrate(env: dict[str, str], world: StripeWorld, *arguments: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        main,
        ["catalog", "migrate", "--to", NEW, "--json", *arguments],
        env={**env, "UPSHIFT_NOW": world.clock.now().isoformat()},
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def linked_on_old(
    world: StripeWorld, http: TestClient, headers: dict[str, str], account_id: str = "acme"
) -> str:
    """A Growth subscription at OLD's prices in Stripe, and the account linked to it."""
    subscription = world.subscribe(account_id, GROWTH_7.at_version(OLD))
    account = world.link(http, headers, account_id, GROWTH_7, subscription)
    assert account["catalog_version"] == OLD
    world.deliver(http)
    return str(subscription.id)


def test_an_immediate_migration_moves_the_subscription_at_the_quoted_proration(
    versioned: StripeWorld,
    http: TestClient,
    admin_headers: dict[str, str],
    settings_env: dict[str, str],
    db: Engine,
) -> None:
    world = versioned
    subscription_id = linked_on_old(world, http, admin_headers)
    world.advance(days=25)  # 5 December: NEW is in force, 5 of the period's 30 days left
    dry = migrate(settings_env, world, "--when", "immediate")
    assert dry["accounts"]["billed_by_stripe"] == 1
    assert dry["mrr_change"]["amount_minor"] == 2_000
    quoted = dry["amount_due"]["amount_minor"]
    assert quoted == 11_900 * 5 // 30 - 9_900 * 5 // 30  # 19.83 - 16.50

    applied = migrate(settings_env, world, "--when", "immediate", "--apply")
    assert (applied["accounts"]["moved"], applied["ledger_entries"]) == (1, 1)
    assert applied["amount_due"]["amount_minor"] == quoted
    # Stripe charged what was quoted, on the new price; the old one stays for other accounts.
    invoice = world.sdk.v1.invoices.list(params={"subscription": subscription_id}).data[0]
    assert invoice.amount_due == quoted
    quantities = world.quantities(subscription_id)
    assert quantities["relay_growth_base_month_2026_12"] == 1
    assert quantities.get("relay_growth_base_month", 0) == 0
    entry = ledger_rows(db, "acme")[-1]
    assert (entry.engine, entry.mrr_delta_minor, entry.catalog_version) == (
        "price_uplift",
        2_000,
        NEW,
    )
    account = http.get("/v1/accounts/acme", headers=admin_headers).json()
    assert (account["catalog_version"], account["mrr"]["amount_minor"]) == (NEW, 14_900)

    # Stripe's webhooks about the change find it booked; a second run moves nobody.
    world.deliver(http)
    again = migrate(settings_env, world, "--when", "immediate", "--apply")
    assert (again["accounts"]["moved"], again["accounts"]["already_on_target"]) == (0, 1)
    assert len(ledger_rows(db, "acme")) == 2
    assert_books_balance(http, admin_headers, db, world, "acme", subscription_id)


def test_an_end_of_term_migration_is_a_schedule_that_stripe_applies_at_renewal(
    versioned: StripeWorld,
    http: TestClient,
    admin_headers: dict[str, str],
    settings_env: dict[str, str],
    db: Engine,
) -> None:
    world = versioned
    subscription_id = linked_on_old(world, http, admin_headers)
    world.advance(days=25)
    applied = migrate(settings_env, world, "--when", "end_of_term", "--apply")
    assert (applied["accounts"]["scheduled"], applied["amount_due"]["amount_minor"]) == (1, 0)
    assert world.subscription(subscription_id).schedule is not None
    # Nothing moves before the period ends, and a second run finds it scheduled.
    again = migrate(settings_env, world, "--when", "end_of_term", "--apply")
    assert again["accounts"]["scheduled"] == 0
    assert [row.kind for row in ledger_rows(db, "acme")] == ["new"]

    world.advance(days=6)  # past the renewal on 10 December
    world.deliver(http)
    account = http.get("/v1/accounts/acme", headers=admin_headers).json()
    assert (account["catalog_version"], account["mrr"]["amount_minor"]) == (NEW, 14_900)
    assert world.quantities(subscription_id)["relay_growth_base_month_2026_12"] == 1
    entry = ledger_rows(db, "acme")[-1]
    assert (entry.engine, entry.mrr_delta_minor) == ("price_uplift", 2_000)
    assert_books_balance(http, admin_headers, db, world, "acme", subscription_id)
