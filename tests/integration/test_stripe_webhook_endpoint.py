"""Stripe renders an event in its webhook endpoint's API version, or in the account's default
(docs.stripe.com/webhooks/versioning), not in the SDK's. `upshift stripe webhook-endpoint create`
pins the endpoint to the version Upshift reads; an event in any other version is refused,
loudly, rather than read in the wrong shape or silently ignored."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.adapters.stripe_api import STRIPE_API_VERSION
from service.cli import main
from service.services.webhooks import SYNCED_EVENTS
from tests.api.test_accounts import assert_problem
from tests.api.test_webhooks import acme, post, stored_events  # noqa: F401 (a fixture)
from tests.fakes.stripe_server import FakeStripe
from tests.fakes.stripe_state import ACCOUNT_DEFAULT_API_VERSION
from tests.live_server import live_server
from tests.stripe_fixtures_app import GROWTH_7, StripeWorld

URL = "https://billing.example.com/v1/webhooks/stripe"


@pytest.fixture
def cli(fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("UPSHIFT_STRIPE_SECRET_KEY", fake_stripe.api_key)
    monkeypatch.setenv("UPSHIFT_STRIPE_API_BASE", fake_stripe.base_url)
    return CliRunner()


def endpoints(fake: FakeStripe) -> list[dict[str, Any]]:
    client = fake.client()
    return [e.to_dict() for e in client.v1.webhook_endpoints.list().auto_paging_iter()]


def test_create_pins_the_version_and_the_events_upshift_handles(
    cli: CliRunner, fake_stripe: FakeStripe
) -> None:
    created = cli.invoke(main, ["stripe", "webhook-endpoint", "create", URL])
    assert created.exit_code == 0, created.output
    [endpoint] = endpoints(fake_stripe)
    assert endpoint["url"] == URL
    assert endpoint["api_version"] == STRIPE_API_VERSION
    assert sorted(endpoint["enabled_events"]) == sorted(SYNCED_EVENTS)
    assert endpoint["secret"] is None  # returned at creation only: the command printed it
    assert f"created {endpoint['id']} for {URL}: API version {STRIPE_API_VERSION}" in created.output
    assert "signing secret (set UPSHIFT_STRIPE_WEBHOOK_SECRET to it): whsec_" in created.output

    again = cli.invoke(main, ["stripe", "webhook-endpoint", "create", URL])
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert len(endpoints(fake_stripe)) == 1


def test_an_endpoint_on_the_account_default_version_is_named_and_left_alone(
    cli: CliRunner, fake_stripe: FakeStripe
) -> None:
    fake_stripe.client().v1.webhook_endpoints.create(
        params={"url": URL, "enabled_events": ["invoice.paid"]}
    )
    refused = cli.invoke(main, ["stripe", "webhook-endpoint", "create", URL])
    assert refused.exit_code == 1
    assert "renders events in API version the account default" in refused.output
    assert "does not send customer.subscription.created" in refused.output
    assert "delete it in the Dashboard" in refused.output
    assert len(endpoints(fake_stripe)) == 1


def test_without_a_key_the_command_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPSHIFT_STRIPE_SECRET_KEY", raising=False)
    result = CliRunner().invoke(main, ["stripe", "webhook-endpoint", "create", URL])
    assert result.exit_code == 2 and "UPSHIFT_STRIPE_SECRET_KEY" in result.output


def test_an_event_in_another_api_version_is_refused_and_counted(
    stripe_http: TestClient,
    acme: dict,  # noqa: F811 (the fixture)
    world: StripeWorld,
    db: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An endpoint made in the Dashboard without a version: Stripe renders for it in the
    # account's default version, whose invoice and subscription shapes are not the ones read here.
    world.sdk.v1.webhook_endpoints.create(
        params={"url": "http://testserver/v1/webhooks/stripe", "enabled_events": ["*"]}
    )
    before = len(stored_events(db))
    event_id = world.fake.events_of_type("customer.subscription.created")[-1]["id"]
    body, signature = world.fake.signed_payload(event_id, api_version=ACCOUNT_DEFAULT_API_VERSION)
    with caplog.at_level(logging.ERROR, logger="upshift.webhooks"):
        refused = post(stripe_http, body, signature)
    problem = assert_problem(refused, 400, "unexpected_api_version", field="api_version")
    assert (
        ACCOUNT_DEFAULT_API_VERSION in problem["detail"] and "webhook-endpoint" in problem["detail"]
    )
    assert len(stored_events(db)) == before  # not stored: Stripe delivers it again, refused again
    assert any("Stripe event refused" in r.getMessage() for r in caplog.records)
    metrics = stripe_http.get("/metrics").text
    assert 'upshift_problems_total{code="unexpected_api_version"} 1.0' in metrics

    # The same event in the pinned version goes through.
    body, signature = world.fake.signed_payload(event_id)
    assert post(stripe_http, body, signature).status_code == 200


def test_stripe_delivers_in_the_endpoints_version_so_only_a_pinned_endpoint_is_read(
    stripe_app: FastAPI, world: StripeWorld, fake_stripe: FakeStripe
) -> None:
    """End to end over HTTP: the fake delivers to the endpoint at the URL in that endpoint's
    version. Unpinned (the account default): refused, 400; pinned by the command: processed."""
    with live_server(stripe_app) as base_url:
        url = f"{base_url}/v1/webhooks/stripe"
        world.sdk.v1.webhook_endpoints.create(params={"url": url, "enabled_events": ["*"]})
        world.subscribe("acme", GROWTH_7)
        statuses = {status for _, status in fake_stripe.deliver(url)}
    assert statuses == {400}

    with live_server(stripe_app) as base_url:
        url = f"{base_url}/v1/webhooks/stripe"
        created = CliRunner().invoke(
            main,
            ["stripe", "webhook-endpoint", "create", url],
            env={
                "UPSHIFT_STRIPE_SECRET_KEY": fake_stripe.api_key,
                "UPSHIFT_STRIPE_API_BASE": fake_stripe.base_url,
            },
        )
        assert created.exit_code == 0, created.output
        world.subscribe("acme2", GROWTH_7)
        statuses = {status for _, status in fake_stripe.deliver(url)}
    assert statuses == {200}
