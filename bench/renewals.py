"""Renewals at one billing boundary on PostgreSQL (issue 15's scale target: >= 2,000/s).

    UPSHIFT_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
        .venv/bin/python bench/renewals.py [--accounts 100000] [--replicas 2]

Three template accounts are made through the real service at a controlled clock (a plain monthly
Growth plan, one with a seat downgrade scheduled for the period's end, one whose free trial ends
there); they are cloned to `--accounts` accounts (88 / 10 / 2 per hundred) with their
subscription items, scheduled changes, first invoices and `new` ledger entries, the chain
re-hashed. Every account's period ends at the same second. Then `--replicas` processes of
`upshift billing run --once` (what the service's worker runs each round) renew them at once.

Prints one JSON line: `renewals_per_s` (accounts renewed per wall-clock second, both replicas
together), the movements booked, and the checks: every account renewed exactly once, the hash
chain intact (`upshift ledger verify`), Σ deltas == MRR for every account.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from common import REPO, fresh_database, new_key, print_result  # type: ignore[import-not-found]
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Connection, Engine, text

from service.adapters.catalog_loader import load_catalog
from service.adapters.db import make_engine
from service.adapters.ledger_report_sql import rebuild_month_flows
from service.adapters.ledger_repository import CHAIN_COLUMNS
from service.adapters.usage_repository import AccountColumns
from service.api.app import create_app
from service.domain.ledger import GENESIS_HASH, chain_hash
from service.ports import FixedClock
from service.services.account_state import account_mrr
from service.services.api_keys import Scope
from service.settings import Settings

BOUNDARY = datetime(2027, 1, 1, tzinfo=UTC)  # a month and a year edge
PERIOD_START = datetime(2026, 12, 1, tzinfo=UTC)
SEEDED_AT = datetime(2026, 12, 10, tzinfo=UTC)
TEMPLATES = {  # template -> (PUT body, share of the accounts in percent)
    "plain": ({"tier": "growth", "seats": 10}, 88),
    "down": ({"tier": "growth", "seats": 10}, 10),
    "trial": ({"tier": "growth", "seats": 5, "status": "trialing"}, 2),
}
CLONED_TABLES = ("accounts", "subscription_items", "scheduled_changes", "invoices", "invoice_lines")


def seed_templates(url: str, engine: Engine) -> None:
    """The three accounts, made by the service itself (PUT, and an upgrade it schedules)."""
    settings = Settings(database_url=url, token_secret=SecretStr("bench-token-secret"))
    headers = {"Authorization": f"Bearer {new_key(engine, Scope.admin)}"}
    period = {
        "current_period_start": PERIOD_START.isoformat(),
        "current_period_end": BOUNDARY.isoformat(),
    }
    app = create_app(settings, clock=FixedClock(SEEDED_AT), engine=engine)
    with TestClient(app) as http:
        for name, (body, _share) in TEMPLATES.items():
            put = http.put(f"/v1/accounts/tmpl-{name}", json=body | period, headers=headers)
            put.raise_for_status()
        scheduled = http.post(
            "/v1/accounts/tmpl-down/upgrades",
            json={"target": {"seats": 6}},
            headers=headers | {"Idempotency-Key": "bench-down"},
        )
        scheduled.raise_for_status()
        assert scheduled.json()["status"] == "scheduled", scheduled.text


def _rows(connection: Connection, table: str, where: str, **params: Any) -> list[dict[str, Any]]:
    return [
        dict(row)
        for row in connection.execute(
            text(f"SELECT * FROM {table} WHERE {where}"), params
        ).mappings()
    ]


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


def clone(engine: Engine, accounts: int) -> dict[str, int]:
    """Copy the templates to `accounts` accounts with COPY; returns how many of each."""
    plan: list[tuple[str, str]] = []  # (clone id, template)
    for number in range(accounts):
        slot = number % 100
        template = "plain" if slot < 88 else "down" if slot < 98 else "trial"
        plan.append((f"acct-{number:06d}", template))
    counts = {name: sum(1 for _, t in plan if t == name) for name in TEMPLATES}
    with engine.begin() as connection:
        source = {
            name: {
                "accounts": _rows(connection, "accounts", "id = :a", a=f"tmpl-{name}"),
                "subscription_items": _rows(
                    connection, "subscription_items", "account_id = :a", a=f"tmpl-{name}"
                ),
                "scheduled_changes": _rows(
                    connection, "scheduled_changes", "account_id = :a", a=f"tmpl-{name}"
                ),
                "invoices": _rows(connection, "invoices", "account_id = :a", a=f"tmpl-{name}"),
                "invoice_lines": _rows(
                    connection,
                    "invoice_lines",
                    "invoice_id IN (SELECT id FROM invoices WHERE account_id = :a)",
                    a=f"tmpl-{name}",
                ),
                "ledger_entries": _rows(
                    connection, "ledger_entries", "account_id = :a ORDER BY id", a=f"tmpl-{name}"
                ),
            }
            for name in TEMPLATES
        }
        cursor = connection.connection.driver_connection.cursor()
        for table in CLONED_TABLES:
            sample = next((rows[table][0] for rows in source.values() if rows[table]), None)
            if sample is None:
                continue
            columns = [
                c
                for c in sample
                if not (c == "id" and table in ("subscription_items", "invoice_lines"))
            ]
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for clone_id, template in plan:
                    old = f"tmpl-{template}"
                    for row in source[template][table]:
                        copy.write_row(
                            [_cell(_renamed(row[c], old, clone_id, c in OWN_IDS)) for c in columns]
                        )
        chain_columns = list(CHAIN_COLUMNS)
        prev = (
            connection.execute(
                text("SELECT hash FROM ledger_entries ORDER BY id DESC LIMIT 1")
            ).scalar()
            or GENESIS_HASH
        )
        names = {name: column.name for name, column in CHAIN_COLUMNS.items()}
        entry_columns = [*names.values(), "recorded_at", "prev_hash", "hash"]
        with cursor.copy(f"COPY ledger_entries ({', '.join(entry_columns)}) FROM STDIN") as copy:
            for clone_id, template in plan:
                old = f"tmpl-{template}"
                for row in source[template]["ledger_entries"]:
                    record = {
                        name: _renamed(row[names[name]], old, clone_id, name in OWN_IDS)
                        for name in chain_columns
                    }
                    digest = chain_hash(prev, record)
                    copy.write_row(
                        [_cell(record[name]) for name in chain_columns]
                        + [row["recorded_at"], prev, digest]
                    )
                    prev = digest
        rebuild_month_flows(connection)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    return counts


# Columns whose values are ids of their own (derived by hashing), made unique per clone.
OWN_IDS = frozenset({"id", "invoice_id", "idempotency_key"})


def _renamed(value: Any, old: str, new: str, own_id: bool) -> Any:
    """A template's value for a clone: the account id replaced, and ids of its own suffixed."""
    if not isinstance(value, str):
        return value
    if old in value:
        return value.replace(old, new)
    return f"{value[:50]}-{new}" if own_id else value


def run_replicas(url: str, replicas: int) -> tuple[float, list[str]]:
    env = {
        **os.environ,
        "UPSHIFT_DATABASE_URL": url,
        "UPSHIFT_TOKEN_SECRET": "bench-token-secret",
        "UPSHIFT_NOW": (BOUNDARY + timedelta(seconds=5)).isoformat(),
        "UPSHIFT_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "service.cli", "billing", "run", "--once"]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for _ in range(replicas)
    ]
    outputs = [process.communicate(timeout=1800)[0].strip() for process in processes]
    elapsed = time.perf_counter() - started
    for process, output in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            sys.exit(f"a replica failed ({process.returncode}): {output}")
    return elapsed, outputs


def checks(url: str, engine: Engine, accounts: int) -> dict[str, Any]:
    with engine.connect() as connection:
        renewed = connection.execute(
            text(
                "SELECT count(DISTINCT account_id), count(*) FROM invoices "
                "WHERE billing_reason = 'subscription_cycle' AND period_start = :boundary"
            ),
            {"boundary": BOUNDARY},
        ).one()
        still_due = connection.execute(
            text("SELECT count(*) FROM accounts WHERE current_period_end <= :b"), {"b": BOUNDARY}
        ).scalar()
        movements = connection.execute(
            text("SELECT count(*) FROM ledger_entries WHERE occurred_at = :b"), {"b": BOUNDARY}
        ).scalar()
        # Σ deltas == MRR for every account, against the MRR its plan has now.
        sums = connection.execute(
            text(
                "SELECT a.id, a.tier, a.interval, a.seats, a.addons, a.currency, a.status, "
                "a.current_period_start, a.current_period_end, "
                "COALESCE(SUM(l.mrr_delta_minor), 0) "
                "FROM accounts a LEFT JOIN ledger_entries l ON l.account_id = a.id "
                "GROUP BY a.id"
            )
        ).all()
    verify = subprocess.run(
        [sys.executable, "-m", "service.cli", "ledger", "verify"],
        cwd=REPO,
        env={**os.environ, "UPSHIFT_DATABASE_URL": url, "UPSHIFT_TOKEN_SECRET": "x"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    catalog = load_catalog(REPO / "pricing_catalog" / "catalog.yaml")
    ledger_equals_mrr = all(
        row[-1] == account_mrr(catalog, AccountColumns(*row[:-1])).minor for row in sums
    )
    return {
        "accounts_renewed": renewed[0],
        "renewal_invoices": renewed[1],
        "renewed_once_each": renewed[0] == renewed[1] == accounts and still_due == 0,
        "movements_at_boundary": movements,
        "ledger_verify_ok": verify.returncode == 0,
        "ledger_equals_mrr": ledger_equals_mrr,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, default=2)
    arguments = parser.parse_args()
    figures: dict[str, Any] = {
        "accounts": arguments.accounts,
        "replicas": arguments.replicas,
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    with fresh_database("postgres") as url:
        engine = make_engine(url)
        seed_templates(url, engine)
        started = time.perf_counter()
        counts = clone(engine, arguments.accounts)
        figures["seed_s"] = round(time.perf_counter() - started, 1)
        figures["scheduled_downgrades"] = counts["down"]
        figures["trial_ends"] = counts["trial"]
        elapsed, outputs = run_replicas(url, arguments.replicas)
        figures["renew_s"] = round(elapsed, 2)
        figures["renewals_per_s"] = round(arguments.accounts / elapsed)
        figures["replica_output"] = outputs
        figures.update(checks(url, engine, arguments.accounts + len(TEMPLATES)))
        engine.dispose()
    print_result(figures)


if __name__ == "__main__":
    main()
