"""The offers read model shared by replicas (api.page_store): a page built by one process is read
back by another in one statement; every change drops it in the changing transaction; a page read
before a change is never stored after it; time and another build end a page; nothing but a page
the service sealed itself is ever unpickled. Two apps on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from service.adapters.change_feed import listen_dsn
from service.adapters.offer_pages import PageReader
from service.api.app import create_app
from service.api.routes.offers import _load_page, read_offers_page
from service.settings import Settings
from tests.fakes.clock import FakeClock
from tests.integration.test_replicas import GROWTH_AT_90_PERCENT, seat_event
from tests.ledger_fixtures import skip_unless_postgres
from tests.usage_fixtures import wait_for

OFFERS = "/v1/accounts/acme/upgrade-offers"


@pytest.fixture
def pair(
    db: Engine, settings: Settings, clock: FakeClock, admin_headers: dict[str, str]
) -> Iterator[tuple[TestClient, TestClient]]:
    """Replicas A and B on one database; acme uses 9 of its 10 seats (a seat offer)."""
    skip_unless_postgres(db)
    apps = [create_app(settings, clock=clock, engine=db) for _ in range(2)]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        for app in apps:
            wait_for(app.state.change_listener.listening.is_set, "the listener is connected")
        assert a.put("/v1/accounts/acme", json=GROWTH_AT_90_PERCENT, headers=admin_headers)
        usage = a.post("/v1/usage", json={"events": [seat_event(9)]}, headers=admin_headers)
        assert usage.is_success, usage.text
        yield a, b


def store_of(client: TestClient) -> Any:
    return client.app.state.page_store  # type: ignore[attr-defined]


def stored_row(db: Engine) -> Any:
    with db.connect() as connection:
        return connection.execute(
            text("SELECT stamp, page, build, valid_until FROM offer_pages WHERE account_id='acme'")
        ).one_or_none()


def run_apart(coroutine: Any) -> Any:
    """`asyncio.run` in a thread of its own: the test's thread may have a loop set already."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def load_stored(app: FastAPI, now: datetime) -> Any:
    """What the app's page load would read back from the store at `now` (None: nothing)."""
    return run_apart(app.state.page_store.load("acme", now))


def test_a_page_built_by_one_replica_is_served_by_the_other_from_one_read(
    pair: tuple[TestClient, TestClient], admin_headers: dict[str, str], db: Engine
) -> None:
    a, b = pair
    built = a.get(OFFERS, headers=admin_headers)
    assert built.status_code == 200, built.text
    assert store_of(a).stored == 1
    assert stored_row(db).page is not None
    # B has never seen acme: its miss reads A's page, and answers the same bytes (same second,
    # same secret: the same offer ids, quotes and tokens).
    served = b.get(OFFERS, headers=admin_headers)
    assert served.status_code == 200
    assert (store_of(b).served, store_of(b).stored) == (1, 0)
    assert served.content == built.content
    metrics = b.get("/metrics").text
    assert 'upshift_offer_pages_total{result="served"} 1.0' in metrics
    assert 'upshift_offer_pages_total{result="stored"} 0.0' in metrics
    [offer] = [o for o in served.json()["offers"] if o["engine"] == "seat"]
    # The token B served from the stored page is genuine: buying through B works.
    bought = b.post(
        "/v1/accounts/acme/upgrades",
        json={"offer_token": offer["offer_token"]},
        headers={**admin_headers, "Idempotency-Key": "click-1"},
    )
    assert bought.status_code == 200, bought.text


def test_every_change_drops_the_stored_page_in_its_own_transaction(
    pair: tuple[TestClient, TestClient], admin_headers: dict[str, str], db: Engine
) -> None:
    a, b = pair
    original = a.get(OFFERS, headers=admin_headers).content
    before = stored_row(db)
    assert before.page is not None
    # A usage report (through A) changes what acme is offered: the page is gone with it.
    usage = a.post("/v1/usage", json={"events": [seat_event(10)]}, headers=admin_headers)
    assert usage.is_success
    after = stored_row(db)
    assert after.page is None and after.stamp == before.stamp + 1
    # B's next page load builds from the new usage (and stores that page).
    fresh = b.get(OFFERS, headers=admin_headers)
    assert (store_of(b).served, store_of(b).stored) == (0, 1)
    assert fresh.content != original  # 10 of 10 seats used now: another seat offer
    assert stored_row(db).page is not None


def test_a_page_read_before_a_change_is_never_stored_after_it(
    pair: tuple[TestClient, TestClient], admin_headers: dict[str, str], db: Engine, clock: FakeClock
) -> None:
    a, _b = pair
    state = a.app.state  # type: ignore[attr-defined]
    for had_row in (True, False):
        if not had_row:  # an account with no row yet (its first page since the migration)
            with db.begin() as connection:
                connection.execute(text("DELETE FROM offer_pages"))
        page = _load_page(state, "acme", clock.now())  # inputs read here...
        event = {**seat_event(8), "event_id": f"between-{had_row}"}
        changed = a.post("/v1/usage", json={"events": [event]}, headers=admin_headers)
        assert changed.is_success  # ...a change commits...
        state.page_store.save(page, clock.now())  # ...and the page read before it comes back
        assert stored_row(db).page is None
    assert state.page_store.stored == 0
    # Read after the change, it is kept.
    read_offers_page(state, "acme", clock.now())
    assert state.page_store.stored == 1 and stored_row(db).page is not None


def test_a_stored_page_ends_when_its_inputs_change_by_time(
    pair: tuple[TestClient, TestClient], admin_headers: dict[str, str], db: Engine, clock: FakeClock
) -> None:
    a, b = pair
    a.get(OFFERS, headers=admin_headers)
    page = a.app.state.offer_cache.get("acme", clock.now())  # type: ignore[attr-defined]
    # acme's API calls are counted per calendar month: the page holds until December starts
    # (before its billing period ends on 10 December).
    assert page.period_end == datetime(2026, 12, 1, tzinfo=UTC)
    assert stored_row(db).valid_until == page.period_end
    clock.set(datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    assert load_stored(b.app, clock.now()) is not None
    clock.set(datetime(2026, 12, 1, tzinfo=UTC))
    assert load_stored(b.app, clock.now()) is None
    assert b.get(OFFERS, headers=admin_headers).status_code == 200
    assert store_of(b).stored == 1  # built again, for the new month


def test_only_a_page_this_build_sealed_is_ever_read(
    pair: tuple[TestClient, TestClient], admin_headers: dict[str, str], db: Engine, clock: FakeClock
) -> None:
    a, b = pair
    a.get(OFFERS, headers=admin_headers)
    genuine = stored_row(db)

    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            return (pytest.fail, ("a forged page was unpickled",))

    forged = [
        # Another build (other code or catalogs): its page is not this process's to read.
        {"build": "0" * 64, "page": genuine.page},
        # A page whose seal does not match (written by anyone but a process with the secret).
        {"build": genuine.build, "page": bytes(32) + pickle.dumps(Boom())},
        {"build": genuine.build, "page": genuine.page[:-1] + b"!"},
    ]
    for refused, values in enumerate(forged, start=1):
        with db.begin() as connection:
            connection.execute(text("UPDATE offer_pages SET build = :build, page = :page"), values)
        assert load_stored(b.app, clock.now()) is None
        assert store_of(b).refused == refused
    # The page load builds instead, and answers.
    assert b.get(OFFERS, headers=admin_headers).status_code == 200


def test_a_stale_offer_refused_drops_the_stored_page_too(
    pair: tuple[TestClient, TestClient], admin_headers: dict[str, str], db: Engine
) -> None:
    """A change made behind the service's back (no stamp moved): the 409 that finds the offer
    stale drops the stored page as well, so "fetch the offers again" cannot loop."""
    a, b = pair
    offers = a.get(OFFERS, headers=admin_headers).json()["offers"]
    [offer] = [o for o in offers if o["engine"] == "seat"]
    with db.begin() as connection:
        connection.execute(text("UPDATE accounts SET version = version + 1"))
    refused = b.post(
        "/v1/accounts/acme/upgrades",
        json={"offer_token": offer["offer_token"]},
        headers={**admin_headers, "Idempotency-Key": "click-1"},
    )
    assert refused.status_code == 409, refused.text
    assert stored_row(db).page is None
    again = b.get(OFFERS, headers=admin_headers).json()["offers"]
    assert all(o["offer_token"] != offer["offer_token"] for o in again)


def test_the_page_reader_survives_a_dropped_connection_and_a_cancelled_read(db: Engine) -> None:
    skip_unless_postgres(db)
    reader = PageReader(listen_dsn(db), size=1)  # one connection: a leaked one would block
    now = datetime(2026, 11, 10, tzinfo=UTC)

    async def scenario() -> None:
        assert await reader.fetch("nobody", now) is None
        with db.connect() as connection:  # the server ends the reader's session
            ended = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE '%FROM offer_pages%' AND pid <> pg_backend_pid()"
                )
            ).all()
            connection.commit()
        assert ended
        assert await reader.fetch("nobody", now) is None  # once more, on a new connection
        for _ in range(3):  # cancelled at each await it may be at: its connection is given up
            read = asyncio.create_task(reader.fetch("nobody", now))
            await asyncio.sleep(0)
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read
            assert await asyncio.wait_for(reader.fetch("nobody", now), 5) is None
        await reader.close()

    run_apart(scenario())
