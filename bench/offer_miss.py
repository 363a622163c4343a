"""Offer cache-miss bench: the in-process cost of one miss (read the account, plan its offers,
render the page), split into its parts, on PostgreSQL.

Run: UPSHIFT_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
     python bench/offer_miss.py [--accounts 2000] [--profile out.prof]

Accounts are seeded as bench/offers.py seeds them. Each figure is the median per account over
one pass through every account, in microseconds: `read_us` the database read
(services.offers.read_offer_inputs in db.connection_read), `plan_us` ranking and preparing
(services.offers.plan_offers), `render_us` the page (api.offer_page.offers_page plus the first
body), `miss_us` all three; `read_cpu_us` and `miss_cpu_us` the CPU time this process spent
on the read and on the whole miss (the rest of the read is the round trip and PostgreSQL).
`store_us` is the time to keep a built page in the offers read model (api.page_store), and
`stored_us` / `stored_cpu_us` the wall and CPU time of a miss answered from it, as another
process's miss is: the stored page read on an event loop, checked and unpickled, and its body.
`--profile` writes cProfile stats of a second pass (the whole miss) to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import time
from datetime import UTC, datetime

from common import REPO, fresh_database, print_result, uvicorn_server
from offers import TOKEN_SECRET, seed

from service.adapters.db import connection_read
from service.api.app import create_app
from service.api.offer_page import offers_page
from service.api.routes.offers import offers_body
from service.services.offers import plan_offers, read_offer_inputs
from service.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    with fresh_database("postgres") as database_url:
        with uvicorn_server(database_url) as server:
            ids = seed(database_url, server.base_url, args.accounts)
        app = create_app(
            Settings(
                database_url=database_url,
                catalog_path=REPO / "pricing_catalog" / "catalog.yaml",
                token_secret=TOKEN_SECRET,
            )
        )
        state = app.state
        catalog, signer, factory = state.catalog, state.token_signer, state.session_factory

        def miss(account_id: str, now: datetime, parts: list[list[float]] | None) -> None:
            started, started_cpu = time.perf_counter(), time.thread_time()
            inputs = connection_read(
                factory, lambda connection: read_offer_inputs(connection, catalog, account_id, now)
            )
            read, read_cpu = time.perf_counter(), time.thread_time()
            plan = plan_offers(catalog, inputs, signer)
            planned = time.perf_counter()
            offers_body(state, offers_page(plan), now)
            rendered, rendered_cpu = time.perf_counter(), time.thread_time()
            if parts is not None:
                parts.append(
                    [
                        read - started,
                        planned - read,
                        rendered - planned,
                        read_cpu - started_cpu,
                        rendered_cpu - started_cpu,
                    ]
                )

        now = datetime.now(UTC)
        for account_id in ids[:200]:  # connections, statement caches, first-use imports
            miss(account_id, now, None)
        parts: list[list[float]] = []
        for account_id in ids:
            miss(account_id, now, parts)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for account_id in ids:
                miss(account_id, now, None)
            profiler.disable()
            profiler.dump_stats(args.profile)
        # The offers read model: each page built and stored once (`store_us`: pickled, sealed
        # and written), then read back as another process's miss reads it (`stored_us`: one
        # statement awaited on an event loop, unsealed, unpickled, and the first body).
        stores: list[float] = []
        for account_id in ids:
            page = offers_page(
                plan_offers(
                    catalog,
                    connection_read(
                        factory,
                        lambda connection, account_id=account_id: read_offer_inputs(
                            connection, catalog, account_id, now
                        ),
                    ),
                    signer,
                )
            )
            started = time.perf_counter()
            state.page_store.save(page, now)
            stores.append(time.perf_counter() - started)
        assert state.page_store.stored == len(ids)

        async def read_back() -> list[tuple[float, float]]:
            figures = []
            for account_id in [*ids[:200], *ids]:
                started, started_cpu = time.perf_counter(), time.thread_time()
                stored = await state.page_store.load(account_id, now)
                assert stored is not None
                offers_body(state, stored, now)
                figures.append((time.perf_counter() - started, time.thread_time() - started_cpu))
            return figures[200:]

        read_backs = asyncio.run(read_back())
        state.impressions.stop()
        state.engine.dispose()

    def median_us(values: list[float]) -> float:
        return round(statistics.median(values) * 1e6, 1)

    print_result(
        {
            "accounts": len(ids),
            "read_us": median_us([p[0] for p in parts]),
            "plan_us": median_us([p[1] for p in parts]),
            "render_us": median_us([p[2] for p in parts]),
            "miss_us": median_us([sum(p[:3]) for p in parts]),
            # CPU time of this thread (what a loaded machine's waiting does not inflate).
            "read_cpu_us": median_us([p[3] for p in parts]),
            "miss_cpu_us": median_us([p[4] for p in parts]),
            "store_us": median_us(stores),
            "stored_us": median_us([r[0] for r in read_backs]),
            "stored_cpu_us": median_us([r[1] for r in read_backs]),
        }
    )


if __name__ == "__main__":
    main()
