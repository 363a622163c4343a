"""Threshold crossings recorded once per period, milestones, readiness and motion over HTTP."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.api.test_accounts import assert_problem
from tests.fakes.clock import FakeClock
from tests.usage_fixtures import (
    crossing_keys,
    event,
    ingest,
    put_account,
    row_counts,
    signals_of,
)


@pytest.fixture
def acme(client: TestClient, admin_headers: dict[str, str]) -> None:
    put_account(client, admin_headers, "acme", tier="starter", seats=3)


def seats(event_id: str, active: int, at: str = "2026-11-10T11:00:00Z") -> dict:
    return event(event_id, feature="seats", action="set", quantity=active, timestamp=at)


def test_a_crossing_is_recorded_once_with_the_values_that_caused_it(
    client: TestClient, db: Engine, acme: None, ingest_headers: dict[str, str]
) -> None:
    below = ingest(client, ingest_headers, event("e1", quantity=7_999)).json()
    assert below["signals"] == []
    crossed = ingest(client, ingest_headers, event("e2", quantity=1)).json()
    [signal] = crossed["signals"]
    assert {k: v for k, v in signal.items() if k != "id"} == {
        "account_id": "acme",
        "threshold_key": "api_calls_warn",
        "feature": "api_calls",
        "level": "warn",
        "at_percent": 80,
        "used": 8_000,
        "limit": 10_000,
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "recorded_at": "2026-11-10T12:00:00Z",
        "motion": "self_serve",
    }
    more = ingest(client, ingest_headers, event("e3", quantity=500)).json()
    assert more["signals"] == []
    assert row_counts(db)["signal_crossings"] == 1
    assert row_counts(db)["signal_outbox"] == 1


def test_dipping_below_and_crossing_again_in_a_period_does_not_duplicate(
    client: TestClient, db: Engine, acme: None, ingest_headers: dict[str, str]
) -> None:
    first = ingest(client, ingest_headers, seats("s1", 3, "2026-11-10T09:00:00Z")).json()
    assert {s["threshold_key"] for s in first["signals"]} == {"seats_high", "seats_full"}
    ingest(client, ingest_headers, seats("s2", 1, "2026-11-10T10:00:00Z"))
    again = ingest(client, ingest_headers, seats("s3", 3, "2026-11-10T11:00:00Z")).json()
    assert again["signals"] == []
    assert row_counts(db)["signal_crossings"] == 2


def test_a_new_period_records_the_crossing_again(
    client: TestClient,
    db: Engine,
    clock: FakeClock,
    acme: None,
    ingest_headers: dict[str, str],
) -> None:
    ingest(client, ingest_headers, event("nov", quantity=10_000))
    clock.set(clock.now().replace(month=12, day=2))
    december = ingest(
        client, ingest_headers, event("dec", quantity=9_000, timestamp="2026-12-02T11:00:00Z")
    ).json()
    assert [s["threshold_key"] for s in december["signals"]] == ["api_calls_warn"]
    assert crossing_keys(db) == [
        ("acme", "api_calls_limit", "2026-11-01"),
        ("acme", "api_calls_warn", "2026-11-01"),
        ("acme", "api_calls_warn", "2026-12-01"),
    ]


def test_lifetime_counters_signal_once_per_billing_period(
    client: TestClient,
    db: Engine,
    clock: FakeClock,
    acme: None,
    ingest_headers: dict[str, str],
) -> None:
    ingest(client, ingest_headers, event("p1", feature="projects", quantity=8))
    ingest(client, ingest_headers, event("p2", feature="projects", quantity=0))
    clock.advance(days=31)  # into the next billing period (the account renews on the 10th)
    renewed = ingest(
        client,
        ingest_headers,
        event("p3", feature="projects", quantity=0, timestamp="2026-12-11T00:00:00Z"),
    ).json()
    assert [(s["threshold_key"], s["period_start"]) for s in renewed["signals"]] == [
        ("projects_warn", "2026-12-10T12:00:00Z")
    ]
    assert row_counts(db)["signal_crossings"] == 2


def test_an_account_put_that_lowers_a_limit_records_the_crossing(
    client: TestClient,
    db: Engine,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    put_account(client, admin_headers, "acme", tier="growth", seats=6, addons={"api_pack": 1})
    ingest(client, ingest_headers, event("a", quantity=150_000))  # 75 % of 200,000
    assert row_counts(db)["signal_crossings"] == 0
    put_account(client, admin_headers, "acme", tier="growth", seats=6)  # the pack is removed
    assert crossing_keys(db) == [
        ("acme", "api_calls_limit", "2026-11-01"),
        ("acme", "api_calls_warn", "2026-11-01"),
    ]
    # Fewer purchased seats than active ones is a crossing too.
    ingest(client, ingest_headers, seats("s", 5))
    put_account(client, admin_headers, "acme", tier="growth", seats=5)
    assert ("acme", "seats_full", "2026-11-10") in crossing_keys(db)


def test_milestones_keep_their_first_timestamp(
    client: TestClient, acme: None, ingest_headers: dict[str, str]
) -> None:
    url = "/v1/accounts/acme/milestones"
    first = client.post(
        url,
        json={
            "milestones": [
                {"name": "first_project_shipped", "timestamp": "2026-11-02T09:00:00+02:00"},
                {"name": "invited_team"},
            ]
        },
        headers=ingest_headers,
    )
    assert first.status_code == 200, first.text
    assert first.json() == {
        "milestones": [
            {
                "name": "first_project_shipped",
                "reached_at": "2026-11-02T07:00:00Z",
                "duplicate": False,
            },
            {"name": "invited_team", "reached_at": "2026-11-10T12:00:00Z", "duplicate": False},
        ],
        "signals": [],
    }
    again = client.post(
        url,
        json={
            "milestones": [
                {"name": "first_project_shipped", "timestamp": "2026-11-05T00:00:00Z"},
                {"name": "connected_integration", "timestamp": "2026-11-06T00:00:00Z"},
                {"name": "connected_integration", "timestamp": "2026-11-04T00:00:00Z"},
            ]
        },
        headers=ingest_headers,
    ).json()["milestones"]
    assert [(m["name"], m["reached_at"], m["duplicate"]) for m in again] == [
        ("first_project_shipped", "2026-11-02T07:00:00Z", True),
        ("connected_integration", "2026-11-04T00:00:00Z", False),
        ("connected_integration", "2026-11-04T00:00:00Z", True),
    ]


@pytest.mark.parametrize(
    ("milestone", "code", "field"),
    [
        ({"name": "signed_up"}, "unknown_milestone", "milestones[0].name"),
        (
            {"name": "invited_team", "timestamp": "2026-11-10T12:05:01Z"},
            "timestamp_in_future",
            "milestones[0].timestamp",
        ),
        (
            {"name": "invited_team", "timestamp": "1999-01-01T00:00:00Z"},
            "timestamp_out_of_range",
            "milestones[0].timestamp",
        ),
        (
            {"name": "invited_team", "timestamp": "0001-01-01T00:00:00+01:00"},
            "validation_error",
            "milestones[0].timestamp",
        ),
        ({"name": "invited_team", "when": "now"}, "validation_error", "milestones[0].when"),
    ],
)
def test_bad_milestones_are_422_and_record_nothing(
    client: TestClient,
    db: Engine,
    acme: None,
    ingest_headers: dict[str, str],
    milestone: dict,
    code: str,
    field: str,
) -> None:
    response = client.post(
        "/v1/accounts/acme/milestones",
        json={"milestones": [milestone]},
        headers=ingest_headers,
    )
    assert_problem(response, 422, code, field)
    assert row_counts(db)["usage_milestones"] == 0


def test_milestones_of_an_unknown_account_are_404(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    response = client.post(
        "/v1/accounts/ghost/milestones",
        json={"milestones": [{"name": "invited_team"}]},
        headers=ingest_headers,
    )
    assert_problem(response, 404, "account_not_found")


def test_signals_summarize_crossings_readiness_window_and_motion(
    client: TestClient,
    clock: FakeClock,
    acme: None,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    empty = signals_of(client, admin_headers)
    assert empty == {
        "account_id": "acme",
        "score": 0,
        "reasons": ["not_activated"],
        "motion": "self_serve",
        "activation": {
            "milestone": "first_project_shipped",
            "activated_at": None,
            "days_since_activation": None,
            "window_days": 30,
            "in_window": False,
        },
        "crossings": [],
    }
    client.post(
        "/v1/accounts/acme/milestones",
        json={
            "milestones": [
                {"name": "first_project_shipped", "timestamp": "2026-11-01T12:00:00Z"},
                {"name": "invited_team", "timestamp": "2026-11-03T12:00:00Z"},
            ]
        },
        headers=ingest_headers,
    )
    ingest(client, ingest_headers, event("a", quantity=9_500), seats("s", 2))
    body = signals_of(client, admin_headers)
    # 50 × 95 % + 30 × 1/3 + 20 (in the window) = 77.5
    assert body["score"] == 77
    assert body["reasons"] == [
        "near_limit:api_calls",
        "value_workflow:invited_team",
        "in_activation_window",
    ]
    assert body["activation"]["activated_at"] == "2026-11-01T12:00:00Z"
    assert body["activation"]["days_since_activation"] == 9
    assert [c["threshold_key"] for c in body["crossings"]] == ["api_calls_warn"]

    clock.advance(days=25)
    later = signals_of(client, admin_headers)
    assert later["activation"]["in_window"] is False
    assert "activation_window_closed" in later["reasons"]


def test_tiers_without_a_self_serve_way_up_route_to_sales(
    client: TestClient, admin_headers: dict[str, str], ingest_headers: dict[str, str]
) -> None:
    put_account(client, admin_headers, "big", tier="business", seats=10)
    body = ingest(client, ingest_headers, seats("s", 10) | {"account_id": "big"}).json()
    assert {s["motion"] for s in body["signals"]} == {"sales_assisted"}
    assert signals_of(client, admin_headers, "big")["motion"] == "sales_assisted"


def test_signals_need_the_admin_scope(
    client: TestClient, acme: None, ingest_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    assert_problem(
        client.get("/v1/accounts/acme/signals", headers=ingest_headers), 403, "insufficient_scope"
    )
    assert_problem(
        client.get("/v1/accounts/ghost/signals", headers=admin_headers), 404, "account_not_found"
    )


def test_many_periods_of_crossings_are_listed_newest_first(
    client: TestClient,
    clock: FakeClock,
    acme: None,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    for month in range(3):
        at = clock.now()
        ingest(
            client,
            ingest_headers,
            event(f"m{month}", quantity=10_000, timestamp=at.isoformat()),
        )
        clock.advance(days=31)
    crossings = signals_of(client, admin_headers)["crossings"]
    starts = [c["period_start"] for c in crossings if c["threshold_key"] == "api_calls_limit"]
    assert starts == sorted(starts, reverse=True) and len(starts) == 3
