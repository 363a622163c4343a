"""Usage bench: ingest events/s through POST /v1/usage (PostgreSQL, SQLite) and sweep accounts/s.

Run: UPSHIFT_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
     python bench/usage.py [--batches 240] [--clients 4] [--accounts 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from common import fresh_database, new_key, print_result, uvicorn_server
from sqlalchemy import Engine, insert, text

from service.adapters.catalog_loader import load_catalog
from service.adapters.db import make_engine, make_session_factory
from service.adapters.orm import AccountRow
from service.api.usage_schemas import UsageBatchIn
from service.services.api_keys import Scope
from service.services.signals import sweep

BATCH = 500
INGEST_ACCOUNTS = 2_000
TIME_LIMIT_S = 60.0
CATALOG = load_catalog("pricing_catalog/catalog.yaml")


def seed_accounts(engine: Engine, count: int, now: datetime) -> None:
    """Growth accounts, inserted in bulk (the PUT path is measured elsewhere)."""
    start = now - timedelta(days=3)
    rows = [
        {
            "id": f"acct-{i:06d}",
            "name": None,
            "tier": "growth",
            "interval": "month",
            "seats": 5 + i % 20,
            "addons": {"api_pack": 1} if i % 7 == 0 else {},
            "currency": "USD",
            "status": "active",
            "current_period_start": start,
            "current_period_end": start + timedelta(days=30),
            "billing_customer_id": None,
            "billing_subscription_id": None,
            "version": 1,
            "catalog_version": CATALOG.version,
            "limits_version": CATALOG.version,
            "created_at": start,
            "updated_at": start,
        }
        for i in range(count)
    ]
    with engine.begin() as connection:
        for offset in range(0, count, 5_000):
            connection.execute(insert(AccountRow), rows[offset : offset + 5_000])
    # A production table has statistics; a fresh bench table would get them from autovacuum
    # only after a while, and plans differ until then.
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def batch_bodies(batches: int, now: datetime, seed: int) -> list[bytes]:
    """Pre-encoded batches (distinct event ids), so the client spends no time on JSON.

    Usage is heavy-tailed: accounts are drawn by a Zipf law (a few busy accounts, a long tail),
    and events are mostly API-call increments, some automation runs, rare new projects and
    readings of active seats.
    """
    rng = random.Random(seed)
    accounts = [f"acct-{i:06d}" for i in range(INGEST_ACCOUNTS)]
    weights = [1 / (rank + 1) for rank in range(INGEST_ACCOUNTS)]
    kinds = [("api_calls", 80), ("automation_runs", 15), ("projects", 4), ("seats", 1)]
    features = [feature for feature, _ in kinds]
    feature_weights = [weight for _, weight in kinds]
    bodies = []
    for b in range(batches):
        picked = rng.choices(accounts, weights, k=BATCH)
        events = []
        for i, account_id in enumerate(picked):
            feature = rng.choices(features, feature_weights)[0]
            quantity = {"api_calls": rng.randint(1, 50), "automation_runs": rng.randint(1, 5)}
            seats = 5 + int(account_id[-6:]) % 20
            events.append(
                {
                    "event_id": f"evt-{seed}-{b}-{i}",
                    "account_id": account_id,
                    "feature": feature,
                    "quantity": rng.randint(1, seats)
                    if feature == "seats"
                    else quantity.get(feature, 1),
                    "timestamp": (now - timedelta(seconds=rng.randint(0, 3600))).isoformat(),
                    "action": "set" if feature == "seats" else "increment",
                }
            )
        body = {"events": events}
        UsageBatchIn.model_validate(body)  # the bench must send what the API accepts
        bodies.append(json.dumps(body).encode())
    return bodies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest_rate(kind: str, batches: int, clients: int) -> tuple[float, int, float]:
    """Events/s through the HTTP API with `clients` concurrent senders.

    Returns (events/s, events sent, server CPU ms per batch): the CPU figure says what one
    core sustains even when the machine is shared and the wall clock is not.
    """
    now = datetime.now(UTC)
    with fresh_database(kind) as url:
        engine = make_engine(url)
        seed_accounts(engine, INGEST_ACCOUNTS, now)
        key = new_key(engine, Scope.ingest)
        engine.dispose()
        warmup = batch_bodies(4, now, seed=0)
        bodies = batch_bodies(batches, now, seed=1)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        with uvicorn_server(url) as server:
            with httpx.Client(base_url=server.base_url, timeout=60) as client:
                for body in warmup:
                    client.post("/v1/usage", content=body, headers=headers).raise_for_status()
            queue = list(reversed(bodies))
            lock = threading.Lock()
            sent = [0]
            errors: list[str] = []
            deadline = time.monotonic() + TIME_LIMIT_S

            def sender() -> None:
                with httpx.Client(base_url=server.base_url, timeout=60) as client:
                    while time.monotonic() < deadline:
                        with lock:
                            if not queue:
                                return
                            body = queue.pop()
                        response = client.post("/v1/usage", content=body, headers=headers)
                        if response.status_code != 200 or response.json()["accepted"] != BATCH:
                            errors.append(response.text[:200])
                            return
                        with lock:
                            sent[0] += BATCH

            threads = [threading.Thread(target=sender) for _ in range(clients)]
            cpu_before = cpu_seconds(server.process.pid)
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(server.process.pid) - cpu_before
            if errors:
                raise SystemExit(f"ingest failed on {kind}: {errors[0]}")
    return sent[0] / elapsed, sent[0], cpu * 1000 / (sent[0] / BATCH)


def seed_sweep(engine: Engine, accounts: int, now: datetime) -> None:
    """Accounts with four current counters each; about one in twenty is over a threshold."""
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    period_start = now - timedelta(days=3)
    params = {
        "n": accounts,
        "ps": period_start,
        "pe": period_start + timedelta(days=30),
        "ms": month_start,
        "me": (month_start + timedelta(days=32)).replace(day=1),
        "life": datetime(1970, 1, 1, tzinfo=UTC),
        "now": now,
        "cv": CATALOG.version,
    }
    with engine.begin() as connection:
        connection.execute(
            text(
                """
                INSERT INTO accounts (id, tier, interval, seats, addons, currency, status,
                    current_period_start, current_period_end, version, catalog_version,
                    limits_version, created_at, updated_at)
                SELECT 'sw-' || lpad(i::text, 7, '0'), 'growth', 'month', 5 + i % 20,
                    CASE WHEN i % 7 = 0 THEN '{"api_pack": 1}' ELSE '{}' END::json,
                    'USD', 'active', :ps, :pe, 1, :cv, :cv, :ps, :ps
                FROM generate_series(1, :n) AS i
                """
            ),
            params,
        )
        connection.execute(
            text(
                """
                INSERT INTO usage_counters (account_id, feature, period_start, period_end, used,
                    reading_at, updated_at)
                SELECT 'sw-' || lpad(i::text, 7, '0'), f.feature,
                    CASE f.feature WHEN 'api_calls' THEN :ms WHEN 'automation_runs' THEN :ps
                        ELSE :life END,
                    CASE f.feature WHEN 'api_calls' THEN :me WHEN 'automation_runs' THEN :pe
                        ELSE NULL END,
                    CASE WHEN i % 20 = 0 THEN f.high ELSE f.low END, NULL, :now
                FROM generate_series(1, :n) AS i,
                    (VALUES ('api_calls', 95000, 20000), ('automation_runs', 4500, 1000),
                            ('projects', 30, 10), ('seats', 5, 3)) AS f(feature, high, low)
                """
            ),
            params,
        )
        connection.execute(text("ANALYZE"))


def sweep_rates(accounts: int) -> tuple[float, float, int]:
    """(first sweep accounts/s, re-sweep accounts/s, crossings recorded) on PostgreSQL."""
    now = datetime.now(UTC)
    with fresh_database("postgres") as url:
        engine = make_engine(url)
        seed_sweep(engine, accounts, now)
        factory = make_session_factory(engine)
        started = time.perf_counter()
        first = sweep(factory, CATALOG, now)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        again = sweep(factory, CATALOG, now)
        again_s = time.perf_counter() - started
        engine.dispose()
    assert first.accounts == again.accounts == accounts, (first, again)
    assert again.crossings == 0, again
    return accounts / first_s, accounts / again_s, first.crossings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=240, help="batches of 500 per backend")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP senders")
    parser.add_argument("--accounts", type=int, default=100_000, help="accounts in the sweep")
    args = parser.parse_args()

    pg_rate, pg_events, pg_cpu = ingest_rate("postgres", args.batches, args.clients)
    sqlite_rate, sqlite_events, sqlite_cpu = ingest_rate("sqlite", args.batches, args.clients)
    sweep_first, sweep_again, crossings = sweep_rates(args.accounts)
    print_result(
        {
            "ingest_events_pg": pg_events,
            "ingest_events_sqlite": sqlite_events,
            "ingest_clients": args.clients,
            "server_cpu_ms_per_batch_pg": round(pg_cpu, 1),
            "server_cpu_ms_per_batch_sqlite": round(sqlite_cpu, 1),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "sweep_accounts": args.accounts,
            "sweep_crossings_recorded": crossings,
            "resweep_accounts_per_s": round(sweep_again),
            "ingest_events_per_s_pg": round(pg_rate),
            "ingest_events_per_s_sqlite": round(sqlite_rate),
            "sweep_accounts_per_s": round(sweep_first),
        }
    )


if __name__ == "__main__":
    main()
