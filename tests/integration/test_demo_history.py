"""`upshift serve --demo` seeds a year of history through the API: every movement kind, a
funnel with served > seen > accepted, a ledger that verifies, the live demo account untouched."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from service.adapters.db import make_session_factory
from service.api.app import create_app
from service.demo_history import ACCOUNTS, HISTORY_KEY_NAME, HISTORY_PREFIX, seed_history
from service.services.api_keys import list_keys
from service.services.demo import DEMO_ACCOUNT_ID, seed_demo
from service.services.ledger_entries import verify_ledger
from service.settings import Settings
from tests.fakes.clock import FakeClock

END = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
YEAR = {"from": "2025-12-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}


def test_the_demo_history_is_a_year_of_every_movement(
    db: Engine,
    settings: Settings,
    finance_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    # Seeded before the service starts, as `serve --demo` does: a running worker on another
    # clock would renew the history's accounts into its own present.
    report = seed_history(settings, END, engine=db)
    assert report.seeded and report.accounts == ACCOUNTS and report.requests > ACCOUNTS
    app = create_app(settings, clock=FakeClock(END), engine=db)
    seed_demo(app.state.session_factory, app.state.catalog, app.state.clock)
    # Once per database: a second serve --demo finds the history and adds nothing.
    assert not seed_history(settings, END, engine=db).seeded
    with TestClient(app) as client:
        _check_history(db, client, finance_headers, admin_headers)


def _check_history(
    db: Engine, client: TestClient, finance_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    body = client.get("/v1/reports/nrr", params=YEAR, headers=finance_headers).json()
    periods = body["periods"]
    assert len(periods) == 12
    assert all(p["ending_mrr_minor"] > 0 for p in periods[1:])
    assert any(p["nrr"] is not None and Decimal(p["nrr"]) > 1 for p in periods)
    funnel = body["offer_funnel"]["rows"]
    served, seen, accepted = (sum(row[k] for row in funnel) for k in ("served", "seen", "accepted"))
    assert served > seen > accepted > 0

    with db.connect() as connection:
        kinds = Counter(
            (kind, engine)
            for kind, engine in connection.execute(
                text("SELECT kind, engine FROM ledger_entries")
            ).all()
        )
        owners = set(connection.execute(text("SELECT account_id FROM ledger_entries")).scalars())
        deltas = dict(
            connection.execute(
                text("SELECT account_id, SUM(mrr_delta_minor) FROM ledger_entries GROUP BY 1")
            ).all()
        )
    assert {k for k, _ in kinds} == {"new", "expansion", "contraction", "churn", "reactivation"}
    assert {e for k, e in kinds if k == "expansion"} == {"seat", "upsell", "addon"}
    # The live demo account's only movement is its own opening.
    assert kinds[("new", None)] == ACCOUNTS + 1
    assert owners - {DEMO_ACCOUNT_ID} == {a for a in owners if a.startswith(HISTORY_PREFIX)}
    for account_id, delta in deltas.items():
        account = client.get(f"/v1/accounts/{account_id}", headers=admin_headers).json()
        mrr = 0 if account["status"] == "canceled" else account["mrr"]["amount_minor"]
        assert delta == mrr, account_id

    with db.connect() as connection:
        assert verify_ledger(connection).ok
    with make_session_factory(db)() as session:
        # The driver's own admin key is revoked once the history is written.
        keys = [row for row in list_keys(session) if row.name == HISTORY_KEY_NAME]
        assert keys and all(row.revoked_at is not None for row in keys)
