"""Ledger bench on PostgreSQL: seed 1,000,000 chained rows, export them as CSV through a real
server (rows/s and peak server RSS at 100k vs 1M rows), time the NRR report (whole months, from
the monthly rollup; and a range cutting a month, from the entries) and chain verify.

Run: UPSHIFT_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
     python bench/ledger.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from common import fresh_database, new_key, print_result, uvicorn_server
from sqlalchemy import Engine, event, text

from service.adapters.db import make_engine, make_session_factory, transaction
from service.adapters.ledger_report_sql import rebuild_month_flows
from service.domain.ledger import GENESIS_HASH, Granularity, PlanSnapshot, Source, chain_hash
from service.services.api_keys import Scope
from service.services.ledger import ledger_balances, record_movement
from service.services.ledger_entries import verify_ledger
from service.services.reports import nrr_report

START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)
ROWS_PER_ACCOUNT = 20
ENGINES = ("seat", "upsell", "addon", "strategic")
COLUMNS = (
    "id",
    "kind",
    "engine",
    "mrr_before_minor",
    "mrr_after_minor",
    "mrr_delta_minor",
    "currency",
    "account_id",
    "source",
    "offer_id",
    "signal_ids",
    "motion",
    "days_since_activation",
    "stripe_invoice_id",
    "stripe_subscription_id",
    "catalog_version",
    "idempotency_key",
    "occurred_at",
    "recorded_at",
    "prev_hash",
    "hash",
)


def account_events(rng: random.Random, accounts: int) -> list[tuple[datetime, int, int, str]]:
    """(when, account, mrr after, engine-or-kind hint) for every account's life, time-sorted."""
    span = (END - START).total_seconds()
    events = []
    for account in range(accounts):
        moment = START + timedelta(seconds=rng.random() * span * 0.25)
        mrr = 0
        gap = span * 0.75 / ROWS_PER_ACCOUNT
        for _ in range(ROWS_PER_ACCOUNT):
            if mrr == 0:
                target = rng.choice((2_900, 9_900, 14_400, 29_900))
            else:
                roll = rng.random()
                if roll < 0.55:
                    target = mrr + rng.choice((900, 1_500, 4_900, 20_000))
                elif roll < 0.9:
                    target = max(900, mrr - rng.choice((900, 1_500, 4_900)))
                else:
                    target = 0
                if target == mrr:
                    target = mrr + 1_500
            events.append((moment, account, target, rng.choice(ENGINES)))
            mrr = target
            moment += timedelta(seconds=rng.random() * gap * 2)
    events.sort(key=lambda event: event[0])
    return events


def chained_rows(events: list[tuple[datetime, int, int, str]]) -> Iterator[tuple]:
    """Ledger rows in COPY column order, classified and hash-chained as record_movement does."""
    balances: dict[int, int] = {}
    paid: set[int] = set()
    prev = GENESIS_HASH
    recorded_at = datetime.now(UTC)
    for number, (moment, account, after, engine_hint) in enumerate(events, start=1):
        before = balances.get(account, 0)
        if before == 0:
            kind, engine = ("reactivation" if account in paid else "new"), None
        elif after == 0:
            kind, engine = "churn", None
        else:
            kind = "expansion" if after > before else "contraction"
            engine = engine_hint
        offer = f"offer-{number}" if kind == "expansion" and number % 3 == 0 else None
        record = {
            "idempotency_key": f"bench:{number}",
            "account_id": f"acct-{account:06d}",
            "kind": kind,
            "engine": engine,
            "mrr_before": before,
            "mrr_after": after,
            "delta": after - before,
            "currency": "USD" if account % 10 else "EUR",
            "source": "self_serve_offer" if offer else "webhook",
            "offer_id": offer,
            "signal_ids": ["sig-usage-80"] if offer else [],
            "motion": "self_serve",
            "days_since_activation": (number % 400) if kind == "expansion" else None,
            "occurred_at": moment,
            "stripe_invoice_id": None,
            "stripe_subscription_id": None,
            "catalog_version": "2026-11-01.1",
        }
        digest = chain_hash(prev, record)
        yield (
            number,
            kind,
            engine,
            before,
            after,
            after - before,
            record["currency"],
            record["account_id"],
            record["source"],
            offer,
            json.dumps(record["signal_ids"]),
            "self_serve",
            record["days_since_activation"],
            None,
            None,
            "2026-11-01.1",
            record["idempotency_key"],
            moment,
            recorded_at,
            prev,
            digest,
        )
        prev = digest
        balances[account] = after
        paid.add(account)


def copy_rows(engine: Engine, rows: list[tuple], accounts: int) -> None:
    """Bulk-load accounts, impressions (for the funnel) and ledger rows with COPY."""
    with engine.begin() as connection:
        cursor = connection.connection.driver_connection.cursor()
        now = datetime.now(UTC)
        account_columns = (
            "id, tier, interval, seats, addons, currency, status, current_period_start, "
            "current_period_end, version, created_at, updated_at"
        )
        with cursor.copy(f"COPY accounts ({account_columns}) FROM STDIN") as copy:
            for account in range(accounts):
                copy.write_row(
                    (
                        f"acct-{account:06d}",
                        "growth",
                        "month",
                        5,
                        "{}",
                        "USD",
                        "active",
                        now,
                        now + timedelta(days=30),
                        1,
                        now,
                        now,
                    )
                )
        impression_columns = (
            "offer_id, account_id, engine, target, currency, reason_codes, signal_ids, "
            "days_since_activation, in_activation_window, catalog_version, shown_at"
        )
        with cursor.copy(f"COPY offer_impressions ({impression_columns}) FROM STDIN") as copy:
            for number in range(1, len(rows) // 5):
                copy.write_row(
                    (
                        f"offer-{number}",
                        f"acct-{number % accounts:06d}",
                        ENGINES[number % 3],
                        "{}",
                        "USD",
                        "[]",
                        "[]",
                        number % 60,
                        number % 60 < 30,
                        "2026-11-01.1",
                        START + timedelta(minutes=number),
                    )
                )
        with cursor.copy(f"COPY ledger_entries ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        connection.execute(
            text("SELECT setval(pg_get_serial_sequence('ledger_entries', 'id'), :last)"),
            {"last": len(rows)},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


def rebuild_rollup_seconds(engine: Engine) -> float:
    """COPY bypassed the write path, which keeps the monthly rollup; build it from the entries
    as the migration does for an existing ledger (`upshift ledger rollup --rebuild`)."""
    started = time.perf_counter()
    with engine.begin() as connection:
        rebuild_month_flows(connection)
    return time.perf_counter() - started


def record_movement_rate(engine: Engine, count: int) -> float:
    """The real write path: one record_movement per transaction, advisory lock included."""
    factory = make_session_factory(engine)
    started = time.perf_counter()
    for number in range(count):
        account = f"live-{number % 50}"
        with transaction(factory) as session:
            before = ledger_balances(session, account).get("USD", 0)
            record_movement(
                session,
                account_id=account,
                currency="USD",
                mrr_before=before,
                mrr_after=before + 1_500,
                before=PlanSnapshot("growth", 5 + number // 50),
                after=PlanSnapshot("growth", 6 + number // 50),
                source=Source.API,
                idempotency_key=f"live:{number}",
                occurred_at=END + timedelta(seconds=number),
                catalog_version="2026-11-01.1",
            )
    return count / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def export_through_server(url: str, engine: Engine) -> tuple[int, float, float, float, float]:
    """(rows, seconds, peak RSS MiB, RSS MiB before, server CPU s) of one CSV export by a fresh
    server."""
    key = new_key(engine, Scope.finance)
    with uvicorn_server(url) as server:
        idle = server.peak_rss_mb()
        cpu_before = cpu_seconds(server.process.pid)
        started = time.perf_counter()
        newlines = 0
        with httpx.stream(
            "GET",
            f"{server.base_url}/v1/ledger/export?format=csv",
            headers={"Authorization": f"Bearer {key}"},
            timeout=600,
        ) as response:
            response.raise_for_status()
            for chunk in response.iter_raw(1 << 20):
                newlines += chunk.count(b"\n")
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(server.process.pid) - cpu_before
        return newlines - 1, elapsed, server.peak_rss_mb(), idle, cpu


def nrr_report_seconds(
    url: str, engine: Engine, runs: int = 5, start: datetime = START
) -> list[float]:
    key = new_key(engine, Scope.finance)
    query = {"from": start.isoformat(), "to": END.isoformat(), "granularity": "month"}
    timings = []
    with uvicorn_server(url) as server, httpx.Client(timeout=120) as client:
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get(
                f"{server.base_url}/v1/reports/nrr",
                params=query,
                headers={"Authorization": f"Bearer {key}"},
            )
            timings.append(time.perf_counter() - started)
            response.raise_for_status()
    return timings


def report_database_cpu(url: str) -> float:
    """PostgreSQL CPU seconds one NRR report costs, summed over its connections: what it would
    take on an idle machine with one core, whatever else this machine is running."""
    engine = make_engine(url)
    backends: list[int] = []

    @event.listens_for(engine, "connect")
    def remember(dbapi_connection: Any, _record: Any) -> None:
        backends.append(dbapi_connection.info.backend_pid)

    nrr_report(engine, START, END, Granularity.MONTH)  # opens the pool's connections
    before = {pid: cpu_seconds(pid) for pid in backends}
    nrr_report(engine, START, END, Granularity.MONTH)
    used = sum(cpu_seconds(pid) - before.get(pid, 0.0) for pid in backends)
    engine.dispose()
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    arguments = parser.parse_args()
    accounts = arguments.rows // ROWS_PER_ACCOUNT

    started = time.perf_counter()
    rows = list(chained_rows(account_events(random.Random(6), accounts)))
    generate_s = time.perf_counter() - started
    print(f"generated and chained {len(rows):,} rows in {generate_s:.1f} s")

    # The machine is shared; the load average says how much of it these figures had.
    figures: dict[str, float | int | None] = {
        "rows": len(rows),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    with fresh_database("postgres") as small_url, fresh_database("postgres") as big_url:
        small, big = make_engine(small_url), make_engine(big_url)
        copy_rows(small, rows[: arguments.small], accounts)
        rebuild_rollup_seconds(small)
        started = time.perf_counter()
        copy_rows(big, rows, accounts)
        seed_s = time.perf_counter() - started
        figures["rollup_rebuild_s"] = round(rebuild_rollup_seconds(big), 2)
        figures["seed_copy_rows_per_s"] = round(len(rows) / seed_s)
        figures["seed_hash_chain_rows_per_s"] = round(len(rows) / generate_s)
        del rows

        small_rows, small_s, rss_small, idle_small, _ = export_through_server(small_url, small)
        big_rows, big_s, rss_big, idle_big, big_cpu = export_through_server(big_url, big)
        assert small_rows == arguments.small and big_rows == figures["rows"], (small_rows, big_rows)
        figures["export_rows_per_s_100k"] = round(small_rows / small_s)
        figures["export_rows_per_s"] = round(big_rows / big_s)
        figures["export_1m_s"] = round(big_s, 2)
        figures["export_1m_server_cpu_s"] = round(big_cpu, 2)
        figures["rss_mb_idle"] = round(max(idle_small, idle_big), 1)
        figures["rss_mb_100k"] = round(rss_small, 1)
        figures["rss_mb_1m"] = round(rss_big, 1)

        timings = nrr_report_seconds(big_url, big)
        figures["nrr_report_first_s"] = round(timings[0], 3)
        figures["nrr_report_s"] = round(statistics.median(timings), 3)
        figures["nrr_report_db_cpu_s"] = round(report_database_cpu(big_url), 3)
        # A range that cuts a month is summed from the entries, not the monthly rollup.
        cut = nrr_report_seconds(big_url, big, runs=3, start=START + timedelta(days=1))
        figures["nrr_report_cut_month_s"] = round(statistics.median(cut), 3)

        started = time.perf_counter()
        with big.connect() as connection:
            verified = verify_ledger(connection, batch_size=10_000)
        assert verified.ok and verified.rows_checked == figures["rows"]
        figures["verify_rows_per_s"] = round(
            verified.rows_checked / (time.perf_counter() - started)
        )

        figures["record_movement_rows_per_s"] = round(record_movement_rate(big, 1_000))
        figures["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        small.dispose()
        big.dispose()
    print_result(figures)


if __name__ == "__main__":
    main()
