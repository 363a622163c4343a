"""Concurrent batches through a real HTTP server: exact counters, one crossing, no deadlock."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.usage_fixtures import event, live_server, put_account, row_counts, usage_of

# On PostgreSQL the batches really overlap and `used = used + excluded.used` under the row lock
# keeps the total exact; on SQLite BEGIN IMMEDIATE serializes them. Both must add up.


def send_concurrently(base_url: str, headers: dict[str, str], batches: list[list[dict]]) -> list:
    start = threading.Barrier(len(batches))

    def send(batch: list[dict]) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as http:
            start.wait()
            return http.post("/v1/usage", json={"events": batch}, headers=headers)

    with ThreadPoolExecutor(len(batches)) as pool:
        return list(pool.map(send, batches))


def test_twenty_concurrent_batches_on_one_counter_add_up_exactly(
    app: FastAPI,
    client: TestClient,
    db: Engine,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    put_account(client, admin_headers, "acme", tier="business", seats=10)
    batches = [[event(f"b{b}-e{i}", quantity=b + 1) for i in range(100)] for b in range(20)]
    with live_server(app) as base_url:
        responses = send_concurrently(base_url, ingest_headers, batches)
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    assert sum(r.json()["accepted"] for r in responses) == 2_000
    # Σ over batches b of 100 × (b + 1) = 100 × 210
    assert usage_of(client, admin_headers)["api_calls"]["used"] == 21_000
    assert row_counts(db)["usage_events"] == 2_000


def test_concurrent_replays_of_one_batch_count_it_once(
    app: FastAPI,
    client: TestClient,
    db: Engine,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    put_account(client, admin_headers, "acme", tier="business", seats=10)
    batch = [event(f"e{i}", quantity=3) for i in range(100)]
    with live_server(app) as base_url:
        responses = send_concurrently(base_url, ingest_headers, [batch] * 8)
    bodies = [r.json() for r in responses]
    assert sum(b["accepted"] for b in bodies) == 100
    assert sum(b["duplicates"] for b in bodies) == 700
    assert usage_of(client, admin_headers)["api_calls"]["used"] == 300


def test_concurrent_batches_crossing_one_threshold_record_it_once(
    app: FastAPI,
    client: TestClient,
    db: Engine,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    put_account(client, admin_headers, "acme", tier="starter", seats=3)
    put_account(client, admin_headers, "beta", tier="starter", seats=3)
    # Each batch alone takes both accounts past 100 %: every batch sees the crossings.
    batches = [
        [
            event(f"b{b}-a", quantity=10_000),
            event(f"b{b}-b", account_id="beta", quantity=10_000),
        ]
        for b in range(10)
    ]
    with live_server(app) as base_url:
        responses = send_concurrently(base_url, ingest_headers, batches)
    assert [r.status_code for r in responses] == [200] * 10
    signals = [s for r in responses for s in r.json()["signals"]]
    assert sorted((s["account_id"], s["threshold_key"]) for s in signals) == [
        ("acme", "api_calls_limit"),
        ("acme", "api_calls_warn"),
        ("beta", "api_calls_limit"),
        ("beta", "api_calls_warn"),
    ]
    counts = row_counts(db)
    assert counts["signal_crossings"] == counts["signal_outbox"] == 4


def test_concurrent_overlapping_batches_count_each_event_once(
    app: FastAPI,
    client: TestClient,
    db: Engine,
    admin_headers: dict[str, str],
    ingest_headers: dict[str, str],
) -> None:
    put_account(client, admin_headers, "acme", tier="business", seats=10)
    # Batch b holds events b*50 .. b*50+99: half of it is in the next batch too, so batches
    # race for shared ids and most meet some already counted (the fold-again path).
    batches = [
        [event(f"e{i}", quantity=i + 1) for i in range(b * 50, b * 50 + 100)] for b in range(10)
    ]
    with live_server(app) as base_url:
        responses = send_concurrently(base_url, ingest_headers, batches)
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert sum(b["accepted"] for b in bodies) == 550
    assert sum(b["duplicates"] for b in bodies) == 450
    assert usage_of(client, admin_headers)["api_calls"]["used"] == sum(range(1, 551))
    assert row_counts(db)["usage_events"] == 550
