"""No sequence of calls can wedge an account or unbalance the ledger.

A hypothesis state machine drives random sequences of admin PUTs, usage reports, quotes,
upgrades (explicit targets and offer tokens), offer page loads, renewal rounds and clock moves
through the HTTP API against a real database. After every call: the status is one the OpenAPI
document lists for that operation (never a 5xx). After every step: for every account, the sum of
its ledger deltas equals the MRR the API reports. At the end the hash chain verifies.

UPSHIFT_SEQUENCE_EXAMPLES sets how many sequences run (default 15; CI's default keeps the suite
fast, a local soak can run thousands).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import Engine, text

from service.api.app import create_app
from service.services.api_keys import Scope
from service.services.ledger_entries import verify_ledger
from service.services.renewals import renew_due_accounts
from service.settings import Settings
from tests.conftest import REPO_ROOT, _empty_tables, _key
from tests.fakes.clock import FakeClock

EXAMPLES = int(os.environ.get("UPSHIFT_SEQUENCE_EXAMPLES", "15"))
OPENAPI = json.loads((REPO_ROOT / "openapi" / "openapi.json").read_text())
ACCOUNTS = ("acme", "beta")

tiers = st.sampled_from(["starter", "growth", "business", "enterprise", "nope"])
intervals = st.sampled_from(["month", "year"])
seat_counts = st.integers(min_value=0, max_value=60)
addon_sets = st.dictionaries(
    st.sampled_from(["api_pack", "projects_pack", "audit_log"]),
    st.integers(min_value=0, max_value=3),
    max_size=2,
)
targets = st.fixed_dictionaries(
    {},
    optional={
        "tier": tiers,
        "interval": intervals,
        "seats": seat_counts,
        "addons": addon_sets,
    },
)


def documented(method: str, template: str) -> set[int]:
    responses = OPENAPI["paths"][template][method.lower()]["responses"]
    return {int(status) for status in responses}


class CallSequences(RuleBasedStateMachine):
    def __init__(self, db: Engine, settings_: Settings) -> None:
        super().__init__()
        _empty_tables(db)
        self.db = db
        self.clock = FakeClock()
        self.app = create_app(settings_, clock=self.clock, engine=db)
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.client.__enter__()
        self.headers = {"Authorization": f"Bearer {_key(db, self.clock, Scope.admin)}"}
        self.offer_tokens: dict[str, str] = {}

    def teardown(self) -> None:
        try:
            with self.db.connect() as connection:
                assert verify_ledger(connection).ok
        finally:
            self.client.__exit__(None, None, None)

    def call(
        self,
        method: str,
        template: str,
        account: str | None = None,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        path = template.replace("{account_id}", account or "")
        headers = dict(self.headers)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        response = self.client.request(method, path, headers=headers, **kwargs)
        assert response.status_code < 500, (method, path, response.text)
        assert response.status_code in documented(method, template), (
            method,
            path,
            response.status_code,
            response.text,
        )
        return response

    @rule(
        account=st.sampled_from(ACCOUNTS),
        tier=tiers,
        interval=intervals,
        seats=seat_counts,
        addons=addon_sets,
        status=st.sampled_from(["active", "active", "past_due", "canceled"]),
    )
    def put_account(
        self, account: str, tier: str, interval: str, seats: int, addons: dict, status: str
    ) -> None:
        body = {
            "tier": tier,
            "interval": interval,
            "seats": seats,
            "addons": addons,
            "status": status,
        }
        self.call("PUT", "/v1/accounts/{account_id}", account, json=body)

    @rule(account=st.sampled_from(ACCOUNTS), seats=st.integers(0, 60))
    def report_seats(self, account: str, seats: int) -> None:
        event = {
            "event_id": str(uuid.uuid4()),
            "account_id": account,
            "feature": "seats",
            "quantity": seats,
            "action": "set",
            "timestamp": self.clock.now().isoformat(),
        }
        self.call("POST", "/v1/usage", json={"events": [event]})

    @rule(account=st.sampled_from(ACCOUNTS), change=targets)
    def quote(self, account: str, change: dict) -> None:
        self.call("POST", "/v1/accounts/{account_id}/quotes", account, json={"target": change})

    @rule(account=st.sampled_from(ACCOUNTS))
    def load_offers(self, account: str) -> None:
        response = self.call("GET", "/v1/accounts/{account_id}/upgrade-offers", account)
        if response.status_code == 200:
            tokens = [o["offer_token"] for o in response.json()["offers"] if o["offer_token"]]
            if tokens:
                self.offer_tokens[account] = tokens[0]

    @rule(account=st.sampled_from(ACCOUNTS), change=targets, retry=st.booleans())
    def upgrade_to(self, account: str, change: dict, retry: bool) -> None:
        key = str(uuid.uuid4())
        for _ in range(2 if retry else 1):  # a retry with the same key replays the answer
            self.call(
                "POST",
                "/v1/accounts/{account_id}/upgrades",
                account,
                idempotency_key=key,
                json={"target": change},
            )

    @rule(account=st.sampled_from(ACCOUNTS))
    def accept_offer(self, account: str) -> None:
        token = self.offer_tokens.pop(account, None)
        if token is None:
            return
        self.call(
            "POST",
            "/v1/accounts/{account_id}/upgrades",
            account,
            idempotency_key=str(uuid.uuid4()),
            json={"offer_token": token},
        )

    @rule(
        delta=st.one_of(
            st.integers(1, 120).map(lambda m: timedelta(minutes=m)),
            st.integers(1, 45).map(lambda d: timedelta(days=d)),
        )
    )
    def time_passes(self, delta: timedelta) -> None:
        self.clock.current += delta

    @rule()
    def renewal_round(self) -> None:
        state = self.app.state
        renew_due_accounts(
            state.session_factory, state.catalog, state.billing_gateways, self.clock.now()
        )

    @invariant()
    def ledger_balances_equal_mrr(self) -> None:
        with self.db.connect() as connection:
            deltas = dict(
                connection.execute(
                    text(
                        "SELECT account_id, SUM(mrr_delta_minor) FROM ledger_entries "
                        "GROUP BY account_id"
                    )
                ).all()
            )
        for account in ACCOUNTS:
            response = self.client.get(f"/v1/accounts/{account}", headers=self.headers)
            if response.status_code == 404:
                assert deltas.get(account, 0) == 0
                continue
            assert response.status_code == 200, response.text
            mrr = response.json()["mrr"]["amount_minor"]
            assert int(deltas.get(account, 0)) == mrr, (account, deltas, response.json())


def test_no_sequence_of_calls_wedges_an_account_or_unbalances_the_ledger(
    db: Engine, settings: Settings
) -> None:
    quiet = settings.model_copy(update={"renewal_poll_s": 3600.0})

    def machine() -> CallSequences:
        return CallSequences(db, quiet)

    run_state_machine_as_test(
        machine,
        settings=settings_for_sequences(),
    )


def settings_for_sequences() -> settings:
    return settings(
        max_examples=EXAMPLES,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
