"""POST /v1/usage: idempotent batches, per-event rejections, 422 for malformed batches."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy import event as sa_event

from tests.api.test_accounts import assert_problem
from tests.fakes.clock import FakeClock
from tests.usage_fixtures import (
    event,
    ingest,
    put_account,
    row_counts,
    table_dump,
    usage_of,
)


@pytest.fixture
def acme(client: TestClient, admin_headers: dict[str, str]) -> None:
    put_account(client, admin_headers, "acme", tier="starter", seats=3)


def test_a_batch_is_counted_once_and_a_replay_changes_nothing(
    client: TestClient,
    db: Engine,
    acme: None,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    batch = [
        event("e1", quantity=100),
        event("e2", quantity=250),
        event("e3", feature="projects", quantity=2),
        event("e4", feature="seats", quantity=2, action="set"),
    ]
    first = ingest(client, ingest_headers, *batch)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 4, "duplicates": 0, "rejected": [], "signals": []}
    before = table_dump(db)
    usage = usage_of(client, admin_headers)
    assert usage["api_calls"]["used"] == 350
    assert usage["projects"]["used"] == 2
    assert usage["seats"]["used"] == 2

    replay = ingest(client, ingest_headers, *batch)
    assert replay.json() == {"accepted": 0, "duplicates": 4, "rejected": [], "signals": []}
    assert table_dump(db) == before
    assert usage_of(client, admin_headers) == usage


def test_a_partly_replayed_batch_counts_only_the_new_events(
    client: TestClient, acme: None, admin_headers: dict[str, str], ingest_headers: dict[str, str]
) -> None:
    ingest(client, ingest_headers, event("e1", quantity=10), event("e2", quantity=20))
    body = ingest(
        client,
        ingest_headers,
        event("e2", quantity=20),
        event("e3", quantity=30),
        event("e3", quantity=30),  # the same id twice in one batch: counted once
    ).json()
    assert (body["accepted"], body["duplicates"]) == (1, 2)
    assert usage_of(client, admin_headers)["api_calls"]["used"] == 60


def test_bad_events_are_rejected_one_by_one_and_the_rest_is_applied(
    client: TestClient,
    db: Engine,
    clock: FakeClock,
    acme: None,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    body = ingest(
        client,
        ingest_headers,
        event("ok-1", quantity=5),
        event("bad-account", account_id="ghost"),
        event("bad-feature", feature="storage"),
        event("on-off", feature="sso"),
        event("negative", quantity=-3),
        event("future", timestamp="2026-11-10T12:05:01Z"),
        event("ancient", timestamp="1999-12-31T23:59:59Z"),
        event("ok-2", quantity=7, timestamp="2026-11-10T12:05:00Z"),
    ).json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    assert [(r["index"], r["event_id"], r["field"], r["code"]) for r in body["rejected"]] == [
        (1, "bad-account", "events[1].account_id", "unknown_account"),
        (2, "bad-feature", "events[2].feature", "unknown_feature"),
        (3, "on-off", "events[3].feature", "feature_not_countable"),
        (4, "negative", "events[4].quantity", "negative_quantity"),
        (5, "future", "events[5].timestamp", "timestamp_in_future"),
        (6, "ancient", "events[6].timestamp", "timestamp_out_of_range"),
    ]
    assert all(r["message"] for r in body["rejected"])
    assert usage_of(client, admin_headers)["api_calls"]["used"] == 12
    # Rejected events are not stored: fixed and sent again under the same id, they count.
    assert row_counts(db)["usage_events"] == 2
    clock.advance(minutes=1)
    again = ingest(client, ingest_headers, event("future", timestamp="2026-11-10T12:05:01Z"))
    assert again.json()["accepted"] == 1


@pytest.mark.parametrize(
    ("events", "field"),
    [
        (
            [event("a"), event("b"), event("c"), {**event("d"), "quantity": 1.5}],
            "events[3].quantity",
        ),
        ([{**event("a"), "quantity": "7"}], "events[0].quantity"),
        ([{**event("a"), "timestamp": "2026-11-10T11:00:00"}], "events[0].timestamp"),
        ([{**event("a"), "timestamp": 1_794_000_000}], "events[0].timestamp"),
        ([{**event("a"), "action": "decrement"}], "events[0].action"),
        ([{**event("a"), "colour": "red"}], "events[0].colour"),
        ([{k: v for k, v in event("a").items() if k != "account_id"}], "events[0].account_id"),
        ([{**event("a"), "event_id": ""}], "events[0].event_id"),
        ([{**event("a"), "quantity": 10**13}], "events[0].quantity"),
        ([], "events"),
    ],
)
def test_a_malformed_batch_is_422_and_writes_nothing(
    client: TestClient,
    db: Engine,
    acme: None,
    ingest_headers: dict[str, str],
    events: list[dict],
    field: str,
) -> None:
    before = table_dump(db)
    assert_problem(ingest(client, ingest_headers, *events), 422, "validation_error", field)
    assert table_dump(db) == before


def test_more_than_a_thousand_events_is_422(
    client: TestClient, acme: None, ingest_headers: dict[str, str]
) -> None:
    events = [event(f"e{i}") for i in range(1001)]
    assert_problem(ingest(client, ingest_headers, *events), 422, "validation_error", "events")
    assert ingest(client, ingest_headers, *events[:1000]).json()["accepted"] == 1000


@pytest.mark.parametrize(
    ("content", "content_type", "field", "code"),
    [
        (b'{"events": [', "application/json", "[12]", "json_invalid"),  # offset of the error
        (b"\xff\xfe", "application/json", "[0]", "json_invalid"),
        (b"", "application/json", "body", "missing"),
        (b"[1, 2]", "application/json", "body", "model_attributes_type"),
        (b'{"events": [], "events": 1}', "application/json", "events", "list_type"),  # last wins
        (
            b'{"events": [{"event_id": "a"}]}',
            "application/problem+json",
            "events[0].account_id",
            "missing",
        ),
        (b'{"events": [{"event_id": "a"}]}', "text/plain", "body", "model_attributes_type"),
    ],
)
def test_a_body_that_is_not_a_batch_is_422_naming_the_spot(
    client: TestClient,
    db: Engine,
    acme: None,
    ingest_headers: dict[str, str],
    content: bytes,
    content_type: str,
    field: str,
    code: str,
) -> None:
    before = table_dump(db)
    response = client.post(
        "/v1/usage", content=content, headers={**ingest_headers, "Content-Type": content_type}
    )
    body = assert_problem(response, 422, "validation_error", field)
    assert body["errors"][0]["code"] == code
    assert table_dump(db) == before


def test_every_error_of_a_malformed_batch_is_listed_in_order(
    client: TestClient, acme: None, ingest_headers: dict[str, str]
) -> None:
    events = [event("a"), {**event("b"), "quantity": "2"}, {**event("c"), "feature": "Bad"}]
    body = assert_problem(
        ingest(client, ingest_headers, *events), 422, "validation_error", "events[1].quantity"
    )
    assert [(e["field"], e["code"]) for e in body["errors"]] == [
        ("events[1].quantity", "int_type"),
        ("events[2].feature", "string_pattern_mismatch"),
    ]


def test_a_batch_in_any_valid_json_spelling_is_counted(
    client: TestClient, acme: None, admin_headers: dict[str, str], ingest_headers: dict[str, str]
) -> None:
    # Escapes, white space, key order and offsets are the JSON's business, not the batch's.
    content = (
        b' {\n "events" : [ {"quantity": 5, "timestamp": "2026-11-10T13:00:00+02:00",'
        b' "account_id": "ac\\u006de", "feature": "api_calls", "event_id": "e\\u0031"} ] } '
    )
    response = client.post(
        "/v1/usage", content=content, headers={**ingest_headers, "Content-Type": "application/json"}
    )
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": [], "signals": []}
    assert ingest(client, ingest_headers, event("e1")).json()["duplicates"] == 1
    assert usage_of(client, admin_headers)["api_calls"]["used"] == 5


@pytest.mark.parametrize(
    "failing_insert",
    [
        "INSERT INTO usage_counters",  # with the events (PostgreSQL) or after them (SQLite)
        "INSERT INTO signal_crossings",  # after events and counters are written
    ],
)
def test_a_failure_mid_batch_writes_nothing(
    client: TestClient,
    db: Engine,
    acme: None,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
    failing_insert: str,
) -> None:
    ingest(client, ingest_headers, event("before", quantity=1))
    before = table_dump(db)

    def fail_on_insert(conn, cursor, statement: str, *args: object) -> None:
        if failing_insert in statement:
            raise RuntimeError("the database went away")

    sa_event.listen(db, "before_cursor_execute", fail_on_insert)
    try:
        # 9,000 of starter's 10,000 API calls: a crossing to record after the counters.
        response = ingest(client, ingest_headers, event("lost-1"), event("lost-2", quantity=9000))
    finally:
        sa_event.remove(db, "before_cursor_execute", fail_on_insert)
    assert_problem(response, 500, "internal_error")
    # What went in before the failure, the transaction took back out.
    assert table_dump(db) == before
    assert ingest(client, ingest_headers, event("lost-1")).json()["accepted"] == 1


def test_a_reading_replaces_the_counter_unless_a_later_one_is_applied(
    client: TestClient, acme: None, admin_headers: dict[str, str], ingest_headers: dict[str, str]
) -> None:
    def seats(*events: dict) -> int:
        ingest(client, ingest_headers, *events)
        return usage_of(client, admin_headers)["seats"]["used"]

    def reading(event_id: str, quantity: int, at: str) -> dict:
        return event(event_id, feature="seats", action="set", quantity=quantity, timestamp=at)

    assert seats(reading("r1", 2, "2026-11-10T10:00:00Z")) == 2
    assert seats(event("i1", feature="seats", timestamp="2026-11-10T10:30:00Z")) == 3
    assert seats(reading("r0", 1, "2026-11-10T09:00:00Z")) == 3  # older than the one applied
    # An older reading in a batch with increments: the reading is ignored, they count.
    assert (
        seats(
            event("i0", feature="seats", timestamp="2026-11-10T08:00:00Z"),
            reading("r00", 5, "2026-11-10T09:30:00Z"),
            event("i00", feature="seats", timestamp="2026-11-10T09:45:00Z"),
        )
        == 5
    )
    assert seats(reading("r2", 1, "2026-11-10T11:00:00Z")) == 1
    assert (
        seats(
            reading("r3", 2, "2026-11-10T11:30:00Z"),
            event("i2", feature="seats", timestamp="2026-11-10T11:45:00Z"),
            event("i3", feature="seats", timestamp="2026-11-10T11:15:00Z"),  # covered by r3
        )
        == 3
    )


def test_usage_counts_in_the_utc_month_of_each_event(
    client: TestClient,
    clock: FakeClock,
    acme: None,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    clock.set(clock.now().replace(month=12, day=1, hour=0, minute=10))
    ingest(
        client,
        ingest_headers,
        event("nov-last", quantity=1, timestamp="2026-11-30T23:59:59Z"),
        event("nov-paris", quantity=10, timestamp="2026-12-01T00:30:00+01:00"),  # Nov in UTC
        event("dec-first", quantity=100, timestamp="2026-12-01T00:00:00Z"),
        event("dec-ny", quantity=1000, timestamp="2026-11-30T19:05:00-05:00"),  # Dec in UTC
    )
    december = usage_of(client, admin_headers)["api_calls"]
    assert december["used"] == 1100
    assert december["period_start"] == "2026-12-01T00:00:00Z"
    assert december["period_end"] == "2027-01-01T00:00:00Z"
    clock.set(clock.now().replace(day=1, month=11, hour=12))
    assert usage_of(client, admin_headers)["api_calls"]["used"] == 11


def test_usage_against_limits_with_add_ons(
    client: TestClient, admin_headers: dict[str, str], ingest_headers: dict[str, str]
) -> None:
    put_account(client, admin_headers, "acme", tier="growth", seats=8, addons={"api_pack": 2})
    ingest(
        client,
        ingest_headers,
        event("a", quantity=150_000),
        # The billing period began at 12:00, when the account was created.
        event("b", feature="automation_runs", quantity=4_000, timestamp="2026-11-10T12:00:00Z"),
        event("c", feature="seats", quantity=6, action="set"),
    )
    response = client.get("/v1/accounts/acme/usage", headers=admin_headers)
    body = response.json()
    assert body["account_id"] == "acme" and body["at"] == "2026-11-10T12:00:00Z"
    usage = {row["feature"]: row for row in body["features"]}
    assert (
        usage["api_calls"]["limit"] == 300_000 and usage["api_calls"]["utilization_percent"] == 50
    )
    assert usage["automation_runs"] == {
        "feature": "automation_runs",
        "kind": "metered",
        "used": 4_000,
        "limit": 5_000,
        "utilization_percent": 80,
        "period_start": "2026-11-10T12:00:00Z",  # the account's billing period
        "period_end": "2026-12-10T12:00:00Z",
    }
    assert usage["seats"] == {
        "feature": "seats",
        "kind": "seats",
        "used": 6,
        "limit": 8,
        "utilization_percent": 75,
        "period_start": None,
        "period_end": None,
    }
    assert usage["sso"]["limit"] is False and usage["sso"]["utilization_percent"] is None
    assert usage["projects"]["period_start"] is None


def test_unlimited_features_have_no_utilization(
    client: TestClient, admin_headers: dict[str, str], ingest_headers: dict[str, str]
) -> None:
    put_account(client, admin_headers, "acme", tier="business", seats=10)
    ingest(client, ingest_headers, event("p", feature="projects", quantity=10_000))
    projects = usage_of(client, admin_headers)["projects"]
    assert (projects["used"], projects["limit"], projects["utilization_percent"]) == (
        10_000,
        None,
        None,
    )


def test_ingest_needs_the_ingest_scope(
    client: TestClient,
    acme: None,
    admin_headers: dict[str, str],
    finance_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    assert_problem(ingest(client, {}, event("a")), 401, "missing_credentials")
    assert_problem(ingest(client, finance_headers, event("a")), 403, "insufficient_scope")
    assert ingest(client, admin_headers, event("a")).status_code == 200
    assert_problem(
        client.get("/v1/accounts/acme/usage", headers=ingest_headers), 403, "insufficient_scope"
    )
    assert_problem(
        client.get("/v1/accounts/ghost/usage", headers=admin_headers), 404, "account_not_found"
    )
