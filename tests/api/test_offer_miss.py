"""The offer cache's miss reads an account's offer inputs in one statement, the same inputs the
per-aggregate reads give (account, counters, billed lines, crossings, milestones)."""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text

from service.adapters.db import connection_read, statement_read_engine, statement_reads
from service.api.deps import account_principal
from service.domain.errors import NotFound
from service.domain.offers import inputs_change_at
from service.services.account_state import state_of
from service.services.accounts import get_account
from service.services.billing import billed_lines
from service.services.offers import OfferInputs, read_offer_inputs
from service.services.signals import signal_summary
from service.services.tokens import issue_session_token
from service.services.usage import usage_snapshot
from tests.api.test_accounts import assert_problem
from tests.fakes.clock import FakeClock
from tests.ledger_fixtures import skip_unless_postgres


def usage(client: TestClient, headers: dict[str, str], feature: str, quantity: int, action: str):
    event_ = {
        "event_id": str(uuid.uuid4()),
        "account_id": "acme",
        "feature": feature,
        "quantity": quantity,
        "action": action,
        "timestamp": "2026-11-20T11:00:00Z",
    }
    response = client.post("/v1/usage", json={"events": [event_]}, headers=headers)
    assert response.status_code in (200, 201, 207), response.text


@pytest.fixture
def busy_acme(
    client: TestClient, admin_headers: dict[str, str], ingest_headers: dict[str, str], clock
) -> None:
    """An account with everything a miss reads: lines billed mid-period (a seat upgrade), live
    counters, crossings of two features and milestones."""
    account = {"tier": "growth", "interval": "month", "seats": 7}
    assert client.put("/v1/accounts/acme", json=account, headers=admin_headers).status_code == 201
    clock.advance(days=10)
    upgraded = client.post(
        "/v1/accounts/acme/upgrades",
        json={"target": {"seats": 10}},
        headers={**admin_headers, "Idempotency-Key": "k1"},
    )
    assert upgraded.status_code == 200, upgraded.text
    usage(client, ingest_headers, "seats", 9, "set")
    usage(client, ingest_headers, "api_calls", 95_000, "increment")
    milestones = {"milestones": [{"name": "first_project_shipped"}, {"name": "invited_team"}]}
    response = client.post("/v1/accounts/acme/milestones", json=milestones, headers=ingest_headers)
    assert response.status_code == 200, response.text
    clock.advance(days=2)


def read_per_aggregate(app: FastAPI, clock: FakeClock) -> OfferInputs:
    """The same inputs from the per-aggregate reads (a statement each)."""
    catalog, now = app.state.catalog, clock.now()
    with statement_reads(app.state.session_factory) as session:
        account = get_account(session, "acme")
        snapshot = usage_snapshot(session, catalog, account, now)
        state = state_of(account)
        signals = signal_summary(session, catalog, account, now, snapshot)
        stamp = session.execute(
            text("SELECT stamp FROM offer_pages WHERE account_id = 'acme'")
        ).scalar_one_or_none()
        return OfferInputs(
            account=state,
            billed=billed_lines(session, catalog, state),
            usage=snapshot.features,
            signals=signals,
            valid_until=inputs_change_at(
                [usage.period for usage in snapshot.features.values()], signals.activated_at, now
            ),
            page_stamp=stamp,
        )


def read_in_statements(app: FastAPI, db: Engine, clock: FakeClock) -> tuple[OfferInputs, int]:
    statements: list[str] = []

    def count(_conn, _cursor, statement: str, *_args: object) -> None:
        if not statement.startswith("BEGIN"):  # SQLite's transaction (see db.statement_reads)
            statements.append(statement)

    with statement_reads(app.state.session_factory) as session:
        event.listen(db, "before_cursor_execute", count)
        try:
            inputs = read_offer_inputs(session.connection(), app.state.catalog, "acme", clock.now())
        finally:
            event.remove(db, "before_cursor_execute", count)
    return inputs, len(statements)


def test_a_miss_reads_the_same_inputs_in_one_statement(
    app: FastAPI, db: Engine, clock: FakeClock, busy_acme: None
) -> None:
    inputs, statements = read_in_statements(app, db, clock)
    assert statements == 1
    expected = read_per_aggregate(app, clock)
    assert inputs == expected
    # What the comparison covers is there: billed mid-period, crossings, milestones, usage.
    assert any(
        line.billed_minor != line.unit_amount.minor * line.quantity for line in inputs.billed
    )
    assert {c.feature for c in inputs.signals.crossings} == {"seats", "api_calls"}
    assert inputs.signals.activated_at is not None
    assert inputs.usage["api_calls"].used == 95_000 and inputs.usage["seats"].used == 9


def test_a_miss_after_the_period_ended_counts_the_period_now_falls_in(
    app: FastAPI, db: Engine, clock: FakeClock, busy_acme: None
) -> None:
    """Not renewed yet (Stripe's renewal webhook still due): the billing period at `now` is
    not the stored one, and its counters are read too (a second statement)."""
    app.state.renewal_worker.stop()  # it would renew the account under the test
    clock.advance(days=30)
    inputs, statements = read_in_statements(app, db, clock)
    assert statements == 2
    assert inputs == read_per_aggregate(app, clock)


def test_a_miss_of_an_unknown_account_is_not_found(app: FastAPI, db: Engine, clock) -> None:
    with statement_reads(app.state.session_factory) as session, pytest.raises(NotFound) as error:
        read_offer_inputs(session.connection(), app.state.catalog, "nobody", clock.now())
    assert error.value.code == "account_not_found"


def test_a_page_load_miss_is_read_and_answered_before_fastapi(
    client: TestClient, app: FastAPI, admin_headers: dict[str, str], clock: FakeClock, busy_acme
) -> None:
    """A session token for an account not cached: api.page_loads reads it in a worker thread,
    keeps it in the cache and answers the route's bytes; FastAPI's machinery is not reached."""
    routed = client.get("/v1/accounts/acme/upgrade-offers", headers=admin_headers)  # a server key
    gates = client.get("/v1/accounts/acme/entitlements", headers=admin_headers)
    assert routed.status_code == gates.status_code == 200
    token = client.post("/v1/accounts/acme/session-tokens", headers=admin_headers).json()["token"]
    app.state.account_caches.clear()

    def not_reached() -> None:
        raise AssertionError("the FastAPI route was reached")

    app.dependency_overrides[account_principal] = not_reached
    browser = {"Authorization": f"Bearer {token}"}
    try:
        missed = client.get("/v1/accounts/acme/upgrade-offers", headers=browser)
        missed_gates = client.get("/v1/accounts/acme/entitlements", headers=browser)
    finally:
        app.dependency_overrides.clear()
    assert missed.status_code == missed_gates.status_code == 200
    assert missed.content == routed.content  # the same second: the same ids and tokens
    assert missed_gates.content == gates.content
    assert app.state.offer_cache.get("acme", clock.now()) is not None
    assert app.state.entitlement_cache.get("acme", clock.now()) is not None

    # A miss that fails goes on to the route, which answers with its problem.
    ghost, _ = issue_session_token(app.state.token_signer, "ghost", clock.now(), 600)
    for path in ("upgrade-offers", "entitlements"):
        response = client.get(
            f"/v1/accounts/ghost/{path}", headers={"Authorization": f"Bearer {ghost}"}
        )
        assert_problem(response, 404, "account_not_found")


def test_a_connection_read_on_postgresql_is_not_pinged_and_outlives_a_dropped_connection(
    app: FastAPI, db: Engine, clock: FakeClock, busy_acme: None, monkeypatch
) -> None:
    """db.connection_read: one round trip per statement (its pool lends connections without
    pool_pre_ping's SELECT), and a connection the server dropped costs a retry, not an error."""
    skip_unless_postgres(db)
    readers = statement_read_engine(db)

    def no_ping(_connection: object) -> bool:
        raise AssertionError("a connection was pinged before a statement read")

    monkeypatch.setattr(readers.dialect, "do_ping", no_ping)
    factory, catalog = app.state.session_factory, app.state.catalog

    def read() -> OfferInputs:
        return connection_read(
            factory, lambda connection: read_offer_inputs(connection, catalog, "acme", clock.now())
        )

    expected = read_per_aggregate(app, clock)
    assert read() == expected
    # The server ends every idle connection of the readers' pool (a restart, a proxy timeout).
    with db.connect() as admin:
        ended = admin.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND state = 'idle' AND query LIKE 'SELECT accounts.id%'"
            )
        ).scalar_one()
    assert ended >= 1
    assert read() == expected


def test_a_page_load_miss_the_database_fails_is_the_routes_problem(
    client: TestClient, admin_headers: dict[str, str], db: Engine, busy_acme: None
) -> None:
    """An unexpected error of a miss (the database failing) is answered as every route's: a
    problem+json 500, logged; never a broken connection."""
    token = client.post("/v1/accounts/acme/session-tokens", headers=admin_headers).json()["token"]

    def fail(_conn, _cursor, statement: str, *_args: object) -> None:
        if "usage_counters" in statement:
            raise RuntimeError("the database went away")

    # On PostgreSQL the miss reads through the pool of db.connection_read.
    engines = [db, statement_read_engine(db)] if db.dialect.name == "postgresql" else [db]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", fail)
    try:
        response = client.get(
            "/v1/accounts/acme/upgrade-offers", headers={"Authorization": f"Bearer {token}"}
        )
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", fail)
    assert_problem(response, 500, "internal_error")
