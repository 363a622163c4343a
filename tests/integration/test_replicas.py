"""Two replicas on one PostgreSQL database: a change committed through one is seen by the other's
next page load (LISTEN/NOTIFY), and a refusal of a stale offer drops the stale plan."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, text

from service.adapters.change_feed import CHANNEL, ChangeListener, listen_dsn
from service.api.app import create_app
from service.services.offer_cache import OfferPlanCache
from service.settings import ServiceMisconfigured, Settings
from tests.api.test_accounts import assert_problem
from tests.fakes.clock import FakeClock
from tests.ledger_fixtures import skip_unless_postgres
from tests.usage_fixtures import wait_for

GROWTH_AT_90_PERCENT = {"tier": "growth", "interval": "month", "seats": 10}


def seat_event(quantity: int) -> dict[str, Any]:
    return {
        "event_id": f"seats-{quantity}",
        "account_id": "acme",
        "feature": "seats",
        "quantity": quantity,
        "timestamp": "2026-11-10T11:00:00Z",
        "action": "set",
    }


@pytest.fixture
def replicas(db: Engine, settings: Settings, clock: FakeClock) -> Iterator[tuple[Any, Any]]:
    """Replicas A and B: two apps, each with its own cache and listener, on one database."""
    skip_unless_postgres(db)
    apps = [create_app(settings, clock=clock, engine=db) for _ in range(2)]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        for app in apps:
            wait_for(app.state.change_listener.listening.is_set, "the listener is connected")
        yield a, b


def cached(app: FastAPI, account_id: str) -> bool:
    return app.state.offer_cache.get(account_id, app.state.clock.now()) is not None


def seat_offers(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get("/v1/accounts/acme/upgrade-offers", headers=headers)
    assert response.status_code == 200, response.text
    return [offer for offer in response.json()["offers"] if offer["engine"] == "seat"]


def test_an_upgrade_through_one_replica_withdraws_the_offer_on_the_other(
    replicas: tuple[TestClient, TestClient], admin_headers: dict[str, str]
) -> None:
    a, b = replicas
    assert a.put("/v1/accounts/acme", json=GROWTH_AT_90_PERCENT, headers=admin_headers).is_success
    assert a.post("/v1/usage", json={"events": [seat_event(9)]}, headers=admin_headers).is_success
    [offer] = seat_offers(b, admin_headers)  # B caches the account's plan
    assert cached(b.app, "acme")

    bought = a.post(
        "/v1/accounts/acme/upgrades",
        json={"offer_token": offer["offer_token"]},
        headers={**admin_headers, "Idempotency-Key": "click-1"},
    )
    assert bought.status_code == 200, bought.text
    wait_for(lambda: not cached(b.app, "acme"), "B dropped the account after A's commit")
    # B's next page load reads the new state: the seats just bought are not offered again.
    again = seat_offers(b, admin_headers)
    assert all(o["target"]["seats"] != offer["target"]["seats"] for o in again)
    account = b.get("/v1/accounts/acme", headers=admin_headers).json()
    assert account["seats"] == offer["target"]["seats"]


def test_a_refused_stale_offer_drops_the_stale_plan_on_the_replica_that_refused_it(
    db: Engine, settings: Settings, clock: FakeClock, admin_headers: dict[str, str]
) -> None:
    """Without notifications (SQLite, or a listener that is down): the 409 itself drops the
    plan, so "fetch the offers again" fetches fresh ones instead of looping on the stale one."""
    with TestClient(create_app(settings, clock=clock, engine=db)) as http:
        http.put("/v1/accounts/acme", json=GROWTH_AT_90_PERCENT, headers=admin_headers)
        http.post("/v1/usage", json={"events": [seat_event(9)]}, headers=admin_headers)
        [offer] = seat_offers(http, admin_headers)
        # Another process changes the account, and this one misses the news.
        with db.begin() as connection:
            connection.execute(text("UPDATE accounts SET version = version + 1"))
        assert cached(http.app, "acme")
        refused = http.post(
            "/v1/accounts/acme/upgrades",
            json={"offer_token": offer["offer_token"]},
            headers={**admin_headers, "Idempotency-Key": "click-1"},
        )
        assert_problem(refused, 409, "state_changed")
        assert not cached(http.app, "acme")
        [fresh] = seat_offers(http, admin_headers)
        assert fresh["offer_token"] != offer["offer_token"]


def test_a_listener_that_reconnects_drops_the_whole_cache(db: Engine) -> None:
    skip_unless_postgres(db)
    cache: OfferPlanCache[Any] = OfferPlanCache(ttl_s=60)
    resets: list[int] = []
    listener = ChangeListener(
        listen_dsn(db), cache.invalidate, lambda: resets.append(1), retry_s=0.05
    ).start()
    try:
        wait_for(listener.listening.is_set, "connected")
        with db.connect() as connection:
            # The server ends the listener's session, as a restart or a network cut would.
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = :listen"
                ),
                {"listen": f"LISTEN {CHANNEL}"},
            )
            connection.commit()
        wait_for(lambda: listener.connections >= 2, "reconnected")
        assert len(resets) >= 2  # once at the first connection, once after the cut
    finally:
        listener.stop()


def test_a_plan_read_before_a_change_is_not_kept_after_it() -> None:
    """A miss reads the database while a change commits: its notification may arrive before
    the read plan is stored; the plan must not be kept then."""
    cache: OfferPlanCache[Any] = OfferPlanCache(ttl_s=60)
    read_since = cache.generation
    cache.invalidate(["acme"])  # the change's notification, while the miss was reading
    cache.put("acme", object(), read_since)
    cache.put("other", "kept", read_since)
    assert "acme" not in cache._entries and "other" in cache._entries
    read_since = cache.generation
    cache.clear()  # a reconnection: anything may have changed
    cache.put("other", "dropped", read_since)
    assert cache._entries == {}


def test_outside_sqlite_the_service_refuses_to_start_without_a_token_secret() -> None:
    settings = Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    with pytest.raises(ServiceMisconfigured, match="UPSHIFT_TOKEN_SECRET"):
        create_app(settings)
    embedded = Settings(database_url="sqlite://", token_secret=None)
    assert create_app(embedded).state.settings.token_secret is not None
    assert create_app(
        settings.model_copy(update={"token_secret": SecretStr("shared")})
    ).state.token_signer


def test_usage_ingested_through_one_replica_moves_the_others_entitlements(
    replicas: tuple[TestClient, TestClient], admin_headers: dict[str, str]
) -> None:
    a, b = replicas
    a.put("/v1/accounts/acme", json=GROWTH_AT_90_PERCENT, headers=admin_headers)

    def seats_used() -> int:
        response = b.get("/v1/accounts/acme/entitlements/seats", headers=admin_headers)
        assert response.status_code == 200, response.text
        return response.json()["used"]

    assert seats_used() == 0  # B caches the account's entitlements
    assert a.post("/v1/usage", json={"events": [seat_event(9)]}, headers=admin_headers).is_success
    wait_for(
        lambda: b.app.state.entitlement_cache.get("acme", b.app.state.clock.now()) is None,
        "B dropped the entitlements after A's commit",
    )
    assert seats_used() == 9
