"""Offers bench: GET upgrade-offers against a bare Starlette route of the same size, and quotes.

Run: UPSHIFT_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
     python bench/offers.py [--seconds 20] [--connections 32] [--accounts 10000]

Both servers run as one uvicorn worker on 127.0.0.1; the load comes from wrk (Debian's package)
when installed, else from an async httpx loop. The frontend calls the endpoint with a session
token, so the load does too (one token per account, rotating over all accounts).

The measured run is the warm steady state: every account is requested once first (its time is
printed as the cold figure), and the server keeps offer inputs for 600 s instead of the default
30 s so that entries warmed at the start of a two-minute cold pass have not expired by the time
the load runs; the cold path is the printed warm-up rate.

Production-shape figures, in the same run and against the same bare route:
- `cold_ratio`: every request a cache miss (`UPSHIFT_OFFERS_CACHE_TTL_S=0`), 1 worker, ÷ bare;
- `scale_2w`: 2 uvicorn workers ÷ the 1-worker figure, after the same warm-up pass (a worker
  that has not seen an account pays its miss, as in real traffic);
- `stale_ms`: an upgrade through one server, then the time until a second server on the same
  database stops offering it (polled every 2 ms);
- `entitlements_p99_ms`: GET entitlements with session tokens at the same concurrency, warm.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import timeit
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from common import REPO, fresh_database, new_key, print_result, uvicorn_server
from sqlalchemy import insert

from service.adapters.catalog_loader import load_catalog
from service.adapters.db import make_engine
from service.adapters.orm import AccountRow
from service.domain.accounts import Plan
from service.domain.catalog import Interval
from service.domain.periods import Period
from service.domain.quotes import current_billed, quote_change
from service.services.api_keys import Scope
from service.services.tokens import TokenSigner, issue_session_token

CATALOG = load_catalog(REPO / "pricing_catalog" / "catalog.yaml")
TOKEN_SECRET = "bench-token-secret"  # the one bench/common.uvicorn_server gives the server


def seed(database_url: str, base_url: str, accounts: int) -> list[str]:
    """Growth accounts in bulk, then their usage through the real ingest endpoint."""
    now = datetime.now(UTC)
    start = now - timedelta(days=10)
    ids = [f"acct-{i:06d}" for i in range(accounts)]
    rows = [
        {
            "id": account_id,
            "name": None,
            "tier": "growth",
            "interval": "month",
            "seats": 10,
            "addons": {},
            "currency": "USD",
            "status": "active",
            "current_period_start": start,
            "current_period_end": start + timedelta(days=30),
            "billing_cycle_anchor": start,
            "billing_customer_id": None,
            "billing_subscription_id": None,
            "version": 1,
            "catalog_version": CATALOG.version,
            "limits_version": CATALOG.version,
            "created_at": start,
            "updated_at": start,
        }
        for account_id in ids
    ]
    engine = make_engine(database_url)
    with engine.begin() as connection:
        for offset in range(0, accounts, 5_000):
            connection.execute(insert(AccountRow), rows[offset : offset + 5_000])
    ingest = {"Authorization": f"Bearer {new_key(engine, Scope.ingest)}"}
    engine.dispose()
    stamp = (now - timedelta(minutes=1)).isoformat()
    events = []
    for i, account_id in enumerate(ids):
        # Three in four accounts are near a limit: seats (9 of 10) or API calls (90%).
        events.append(_event(account_id, "seats", 9 if i % 2 else 4, "set", stamp))
        events.append(
            _event(account_id, "api_calls", 90_000 if i % 4 else 20_000, "increment", stamp)
        )
    with httpx.Client(base_url=base_url, timeout=120) as http:
        for offset in range(0, len(events), 1_000):
            response = http.post(
                "/v1/usage", json={"events": events[offset : offset + 1_000]}, headers=ingest
            )
            response.raise_for_status()
    return ids


def _event(account_id: str, feature: str, quantity: int, action: str, stamp: str) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "account_id": account_id,
        "feature": feature,
        "quantity": quantity,
        "action": action,
        "timestamp": stamp,
    }


def tokens(ids: list[str], endpoint: str = "upgrade-offers") -> list[tuple[str, str]]:
    signer = TokenSigner(TOKEN_SECRET)
    now = datetime.now(UTC)
    return [
        (
            f"/v1/accounts/{account_id}/{endpoint}",
            issue_session_token(signer, account_id, now, 3600)[0],
        )
        for account_id in ids
    ]


def stale_milliseconds(buyer: str, watcher: str, requests: list[tuple[str, str]]) -> float:
    """Buy an offer through `buyer`, then time until `watcher` (which had it cached) stops
    offering the same change."""
    with httpx.Client(timeout=10) as http:
        for path, token in requests:
            headers = {"Authorization": f"Bearer {token}"}
            offers = http.get(f"{watcher}{path}", headers=headers).json()["offers"]
            bought = next((o for o in offers if o["offer_token"]), None)
            if bought is None:
                continue
            change = (bought["engine"], bought["target"])
            done = http.post(
                f"{buyer}{path.replace('upgrade-offers', 'upgrades')}",
                json={"offer_token": bought["offer_token"]},
                headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
            )
            done.raise_for_status()
            upgraded = time.perf_counter()
            deadline = upgraded + 30
            while time.perf_counter() < deadline:
                offers = http.get(f"{watcher}{path}", headers=headers).json()["offers"]
                if all((o["engine"], o["target"]) != change for o in offers):
                    return (time.perf_counter() - upgraded) * 1000
                time.sleep(0.002)
            raise RuntimeError("the second server kept offering a bought change for 30 s")
    raise RuntimeError("no account had an offer to buy")


def run_wrk(base_url: str, requests: list[tuple[str, str]], seconds: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("local reqs = {\n")
        for path, token in requests:
            script.write(f'  {{"{path}", "Bearer {token}"}},\n')
        script.write(
            "}\nlocal i = 0\n"
            "request = function()\n"
            "  i = i % #reqs + 1\n"
            '  return wrk.format("GET", reqs[i][1], {["Authorization"] = reqs[i][2]})\n'
            "end\n"
            "done = function(summary, latency, requests)\n"
            '  io.write(string.format("JSON {\\"rps\\": %f, \\"p50_ms\\": %f, \\"p99_ms\\": %f, '
            '\\"errors\\": %d, \\"non2xx\\": %d}\\n", summary.requests / (summary.duration / 1e6), '
            "latency:percentile(50) / 1000, latency:percentile(99) / 1000, "
            "summary.errors.connect + summary.errors.read + summary.errors.write + "
            "summary.errors.timeout, summary.errors.status))\n"
            "end\n"
        )
    output = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            script.name,
            base_url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    Path(script.name).unlink()
    match = re.search(r"^JSON (.*)$", output, re.MULTILINE)
    assert match, output
    return json.loads(match.group(1))


async def _httpx_load(
    base_url: str, requests: list[tuple[str, str]], seconds: int, connections: int
) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(
        base_url=base_url, timeout=5, limits=httpx.Limits(max_connections=connections)
    ) as http:

        async def worker(offset: int) -> None:
            nonlocal errors
            index = offset
            while time.monotonic() < deadline:
                path, token = requests[index % len(requests)]
                index += connections
                started = time.perf_counter()
                response = await http.get(path, headers={"Authorization": f"Bearer {token}"})
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(connections)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": 0,
        "non2xx": errors,
    }


async def warm_every_account(
    base_url: str, requests: list[tuple[str, str]], connections: int
) -> float:
    """One request per account, `connections` at a time: fills the in-process offer cache the
    way real page loads would, and measures the cold (cache-miss) path on the way."""
    queue = list(requests)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:

        async def worker() -> None:
            while queue:
                path, token = queue.pop()
                (
                    await http.get(path, headers={"Authorization": f"Bearer {token}"})
                ).raise_for_status()

        await asyncio.gather(*(worker() for _ in range(connections)))
    return time.monotonic() - started


def load(base_url: str, requests: list[tuple[str, str]], seconds: int, connections: int) -> dict:
    if shutil.which("wrk"):
        return run_wrk(base_url, requests, seconds, connections)
    return asyncio.run(_httpx_load(base_url, requests, seconds, connections))


def quote_microseconds() -> float:
    """In-process time of one quote: a Growth account moving to Business mid-period."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    period = Period(start, start + timedelta(days=30))
    current = Plan("growth", Interval.month, 8, {"api_pack": 1})
    target = Plan("business", Interval.month, 10, {"api_pack": 1})
    billed = current_billed(CATALOG, current, period)
    moment = start + timedelta(days=12, hours=5)
    runs = 20_000
    best = min(
        timeit.repeat(
            lambda: quote_change(CATALOG, current, period, billed, target, moment),
            number=runs,
            repeat=5,
        )
    )
    return best / runs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args()
    tool = "wrk" if shutil.which("wrk") else "httpx"
    print(f"load generator: {tool}, {args.connections} connections, {args.seconds} s per run")

    warm_env = {"UPSHIFT_OFFERS_CACHE_TTL_S": "600"}
    with fresh_database("postgres") as database_url:
        with uvicorn_server(database_url, extra_env=warm_env) as server:
            ids = seed(database_url, server.base_url, args.accounts)
            requests = tokens(ids)
            sample = httpx.get(
                f"{server.base_url}{requests[1][0]}",
                headers={"Authorization": f"Bearer {requests[1][1]}"},
            )
            sample.raise_for_status()
            offers_count = statistics.mean(
                len(
                    httpx.get(
                        f"{server.base_url}{path}", headers={"Authorization": f"Bearer {token}"}
                    ).json()["offers"]
                )
                for path, token in requests[:40]
            )
            print(f"seeded {len(ids)} accounts; {offers_count:.1f} offers per account on average")
            warm_s = asyncio.run(warm_every_account(server.base_url, requests, args.connections))
            print(
                f"warm-up: every account once in {warm_s:.1f} s "
                f"({len(requests) / warm_s:.0f}/s, cold)"
            )
            offers = load(server.base_url, requests, args.seconds, args.connections)
            gates = tokens(ids, "entitlements")
            asyncio.run(warm_every_account(server.base_url, gates, args.connections))
            entitlements = load(server.base_url, gates, args.seconds, args.connections)
            with uvicorn_server(database_url, extra_env=warm_env) as second:
                stale_ms = statistics.median(
                    stale_milliseconds(server.base_url, second.base_url, requests[i::5])
                    for i in range(5)
                )
        # Accounts bought above are still fine to price: every run below sees the same state.
        with uvicorn_server(
            database_url, extra_env={"UPSHIFT_OFFERS_CACHE_TTL_S": "0"}
        ) as uncached:
            load(uncached.base_url, requests, 3, args.connections)
            cold = load(uncached.base_url, requests, args.seconds, args.connections)
        with uvicorn_server(database_url, extra_env=warm_env, workers=2) as two:
            asyncio.run(warm_every_account(two.base_url, requests, args.connections))
            two_workers = load(two.base_url, requests, args.seconds, args.connections)

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as body_file:
        body_file.write(sample.text)
    with uvicorn_server(
        "sqlite://",
        app="bare_app:app",
        extra_env={"BENCH_BARE_BODY": body_file.name, "PYTHONPATH": str(REPO / "bench")},
    ) as bare:
        load(bare.base_url, requests, 3, args.connections)
        baseline = load(bare.base_url, requests, args.seconds, args.connections)
    Path(body_file.name).unlink()

    print(f"response size: {len(sample.content)} bytes")
    for name, run in (
        ("offers", offers),
        ("cold", cold),
        ("two workers", two_workers),
        ("entitlements", entitlements),
    ):
        print(f"{name}: non-2xx {run['non2xx']}, socket errors {run['errors']}")
    print_result(
        {
            "offers_rps": round(offers["rps"], 1),
            "bare_rps": round(baseline["rps"], 1),
            "ratio": round(offers["rps"] / baseline["rps"], 3),
            "p50_ms": round(offers["p50_ms"], 2),
            "p99_ms": round(offers["p99_ms"], 2),
            "quote_us": round(quote_microseconds(), 1),
            # The same load on the bare route: what the machine adds to every latency.
            "bare_p50_ms": round(baseline["p50_ms"], 2),
            "bare_p99_ms": round(baseline["p99_ms"], 2),
            "cold_rps": round(cold["rps"], 1),
            "cold_ratio": round(cold["rps"] / baseline["rps"], 3),
            "cold_p99_ms": round(cold["p99_ms"], 2),
            "two_workers_rps": round(two_workers["rps"], 1),
            "scale_2w": round(two_workers["rps"] / offers["rps"], 3),
            "two_workers_p99_ms": round(two_workers["p99_ms"], 2),
            "stale_ms": round(stale_ms, 1),
            "entitlements_rps": round(entitlements["rps"], 1),
            "entitlements_p99_ms": round(entitlements["p99_ms"], 2),
        }
    )


if __name__ == "__main__":
    main()
