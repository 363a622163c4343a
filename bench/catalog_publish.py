"""`upshift catalog publish` reaching running replicas on PostgreSQL: how long after the commit
each replica serves the new version (LISTEN/NOTIFY), and what a watcher's look costs when
nothing was published (the poll every replica makes every UPSHIFT_CATALOG_POLL_S).

    UPSHIFT_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/catalog_publish.py [--replicas 4] [--versions 6]

Each replica is an app of its own (own engine, listener and watcher thread) in this process; the
watchers poll once an hour, so only the notification brings a version in time. Versions are the
bundled 2026-12-01.1 document under new names, a month apart. Prints per-version propagation
(commit -> the last replica serving it) and the cost of an idle look, then one JSON line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime

from common import REPO, fresh_database, print_result  # type: ignore[import-not-found]
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.adapters.catalog_loader import catalog_from_document, load_catalog, load_catalogs
from service.adapters.db import make_engine, make_session_factory
from service.api.app import create_app
from service.ports import FixedClock
from service.services.catalog_publishing import publish_catalog, publish_lead
from service.settings import Settings

FILES = REPO / "pricing_catalog" / "catalog.yaml"
NEW = REPO / "pricing_catalog" / "catalog-2026-12-01.yaml"
NOW = datetime(2026, 11, 10, 12, tzinfo=UTC)


def wait(condition: object, timeout_s: float = 10.0) -> float:
    started = time.perf_counter()
    while not condition():  # type: ignore[operator]
        if time.perf_counter() - started > timeout_s:
            sys.exit("a replica did not load the version within 10 s")
        time.sleep(0.0005)
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--versions", type=int, default=6)
    args = parser.parse_args()
    with fresh_database("postgres") as url, ExitStack() as stack:
        settings = Settings(
            database_url=url,
            catalog_path=FILES,
            token_secret=SecretStr("bench"),
            catalog_poll_s=3600.0,
        )
        apps = [create_app(settings, clock=FixedClock(NOW)) for _ in range(args.replicas)]
        for app in apps:
            stack.enter_context(TestClient(app))
            wait(app.state.catalog_listener.listening.is_set)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        files = load_catalogs(FILES)
        base = load_catalog(NEW).model_dump(mode="json")
        propagation_ms: list[float] = []
        for month in range(args.versions):
            document = {
                **base,
                "version": f"2027-{month + 1:02d}-01.1",
                "effective_from": f"2027-{month + 1:02d}-01T00:00:00Z",
            }
            catalog = catalog_from_document(document, "bench")
            publish_catalog(factory, files, catalog, "bench.yaml", NOW, lead=publish_lead(10))
            committed = time.perf_counter()
            last = max(
                wait(lambda a=app, v=catalog.version: v in a.state.catalogs.history.names)
                for app in apps
            )
            propagation_ms.append((last - committed) * 1000)
        watcher = apps[0].state.catalog_watcher
        looks = 300
        started = time.perf_counter()
        for _ in range(looks):
            watcher.run_once()
        idle_look_ms = (time.perf_counter() - started) / looks * 1000
        engine.dispose()
        served = apps[-1].state.catalogs.history.names
    print_result(
        {
            "replicas": args.replicas,
            "versions_published": args.versions,
            "versions_served_by_each": len(served),
            "propagation_ms_median": round(statistics.median(propagation_ms), 1),
            "propagation_ms_max": round(max(propagation_ms), 1),
            "idle_look_ms": round(idle_look_ms, 2),
        }
    )


if __name__ == "__main__":
    main()
