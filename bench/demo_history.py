"""How long `upshift serve --demo` spends seeding the demo's year of history (target: < 10 s).

    .venv/bin/python bench/demo_history.py [sqlite|postgres]

Seeds a fresh database (SQLite by default, the embedded default `serve --demo` uses; postgres
reads UPSHIFT_TEST_DATABASE_URL) exactly as `serve --demo` does, three times, and prints one
JSON line: the median and worst seconds, with the accounts and API requests played.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime

from common import fresh_database, print_result  # type: ignore[import-not-found]
from pydantic import SecretStr

from service.demo_history import seed_history
from service.settings import Settings

END = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
RUNS = 3


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    seconds: list[float] = []
    requests = accounts = 0
    for _ in range(RUNS):
        with fresh_database(kind) as url:
            settings = Settings(database_url=url, token_secret=SecretStr("bench-token-secret"))
            started = time.perf_counter()
            report = seed_history(settings, END)
            seconds.append(time.perf_counter() - started)
            requests, accounts = report.requests, report.accounts
    print_result(
        {
            "database": kind,
            "accounts": accounts,
            "requests": requests,
            "seed_s_median": round(statistics.median(seconds), 2),
            "seed_s_worst": round(max(seconds), 2),
            "target_s": 10,
        }
    )


if __name__ == "__main__":
    main()
