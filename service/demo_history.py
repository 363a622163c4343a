"""A year of synthetic history for the demo: accounts that open, grow, shrink, churn and come back.

`upshift serve --demo` seeds it beside the live `demo` account, so the dashboard's NRR and GRR
lines, movements and offer funnel mean something on first open. Everything goes through the
service's own HTTP API, in process, with a clock moved through the year: accounts are PUT, usage
is reported, offers are fetched (served), the first one is reported seen, some are accepted, some
accounts schedule downgrades, cancel and reactivate, and renewals run at every period boundary.
Nothing is written to the ledger directly, so the history obeys every rule the live service does.

The script is a pure function of a seed: the same seed gives the same events, dated relative to
the moment it ends (the service's "now").
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx
from sqlalchemy import Engine, select

from service.adapters.db import make_engine, make_session_factory, transaction
from service.adapters.orm import AccountRow
from service.api.app import create_app
from service.services.api_keys import Scope, create_key, list_keys, revoke_key
from service.services.renewals import renew_due_accounts
from service.settings import Settings

HISTORY_KEY_NAME = "demo-history"
HISTORY_PREFIX = "hist_"  # every history account's id starts with it; the live demo's does not
DEFAULT_SEED = 2026
HISTORY_DAYS = 365
ACCOUNTS = 32
RENEWAL_SWEEP_DAYS = 7  # how often the driver runs the renewal worker's round

# (tier, weight, seats to start with); monthly unless the script says yearly
_TIERS = (("starter", 50, (3, 7)), ("growth", 35, (5, 14)), ("business", 15, (10, 24)))
_NAMES = (
    "Acme", "Birch", "Cobalt", "Delta", "Ember", "Fjord", "Gale", "Harbor", "Iris", "Juniper",
    "Kite", "Lumen", "Maple", "Nimbus", "Onyx", "Pine", "Quartz", "Raven", "Sable", "Tidal",
)  # fmt: skip


class Action(StrEnum):
    open = "open"  # PUT the account: tier, seats, interval (books `new`)
    activate = "activate"  # the catalog's activation milestone (opens the post-activation window)
    use = "use"  # report seats in use and API calls this month (may cross thresholds)
    browse = "browse"  # fetch offers (served); maybe see the first; maybe accept it
    downgrade = "downgrade"  # schedule fewer seats for the end of the term (contraction)
    cancel = "cancel"  # PUT status canceled (churn)
    reactivate = "reactivate"  # PUT status active again (reactivation)


@dataclass(frozen=True, slots=True)
class Event:
    day: int  # days after the history starts
    account_id: str
    action: Action
    args: dict[str, Any] = field(default_factory=dict)


def history_script(seed: int = DEFAULT_SEED, accounts: int = ACCOUNTS) -> list[Event]:
    """The events of a year, in the order they happen. Pure: the same seed, the same list."""
    rng = random.Random(seed)
    events: list[Event] = []
    for index in range(accounts):
        account_id = f"{HISTORY_PREFIX}{index:03d}"
        events.extend(_account_story(rng, account_id, index))
    events.sort(key=lambda e: (e.day, e.account_id))
    return events


def _account_story(rng: random.Random, account_id: str, index: int) -> Iterator[Event]:
    tier, _, (low, high) = rng.choices(_TIERS, weights=[t[1] for t in _TIERS])[0]
    seats = rng.randint(low, high)
    start = rng.randrange(0, HISTORY_DAYS - 60)
    name = f"{_NAMES[index % len(_NAMES)]} {['Labs', 'Co.', 'Studio', 'Works'][index % 4]}"
    yield Event(start, account_id, Action.open, {"tier": tier, "seats": seats, "name": name})
    if rng.random() < 0.85:
        yield Event(start + rng.randint(1, 12), account_id, Action.activate)
    # A trait per account: most grow, some stall, a few shrink or leave.
    trait = rng.choices(("grower", "steady", "shrinker", "leaver"), weights=(55, 25, 12, 8))[0]
    canceled = False
    day = start + rng.randint(20, 27)
    used = max(1, seats - rng.randint(0, 2))
    while day < HISTORY_DAYS - 1:
        if canceled:
            if rng.random() < 0.5:
                yield Event(day, account_id, Action.reactivate)
                canceled = False
            else:
                return
        elif trait == "leaver" and rng.random() < 0.3:
            yield Event(day, account_id, Action.cancel)
            canceled = True
        elif trait == "shrinker" and rng.random() < 0.35:
            yield Event(day, account_id, Action.downgrade, {"fewer_seats": rng.randint(1, 3)})
        else:
            if trait == "grower":
                used += rng.randint(1, 3)
            api_calls = rng.choice((0, 0, 1, 2)) * 45_000 if trait == "grower" else 0
            yield Event(day, account_id, Action.use, {"seats": used, "api_calls": api_calls})
            seen = rng.random() < 0.8
            accept = seen and rng.random() < (0.45 if trait == "grower" else 0.1)
            # Which offer the customer looks at: the widget's first, or another one elsewhere
            # in the product (a pricing page, say).
            pick = 0 if rng.random() < 0.6 else 1
            yield Event(
                day, account_id, Action.browse, {"seen": seen, "accept": accept, "pick": pick}
            )
        day += rng.randint(26, 40)


class MovedClock:
    """The history's clock: the driver sets it; the in-process service reads it."""

    def __init__(self, instant: datetime) -> None:
        self.instant = instant

    def now(self) -> datetime:
        return self.instant


@dataclass(frozen=True, slots=True)
class HistoryReport:
    accounts: int
    requests: int
    seeded: bool  # False: the database already had a history, nothing was done


def has_history(engine: Engine) -> bool:
    with make_session_factory(engine)() as session:
        prefix = select(AccountRow.id).where(AccountRow.id.like(f"{HISTORY_PREFIX}%"))
        return session.scalars(prefix.limit(1)).first() is not None


def seed_history(
    settings: Settings,
    end: datetime,
    seed: int = DEFAULT_SEED,
    accounts: int = ACCOUNTS,
    engine: Engine | None = None,
) -> HistoryReport:
    """Play the script through the service's API, ending at `end`. Once per database: a second
    call finds the history's accounts and does nothing. `engine`: share the caller's pool."""
    owned = engine is None
    engine = engine or make_engine(settings.database_url)
    try:
        if has_history(engine):
            return HistoryReport(accounts=0, requests=0, seeded=False)
        return _play(settings, engine, end, seed, accounts)
    finally:
        if owned:
            engine.dispose()


def _play(
    settings: Settings, engine: Engine, end: datetime, seed: int, accounts: int
) -> HistoryReport:
    events = history_script(seed, accounts)
    begin = (end - timedelta(days=HISTORY_DAYS)).replace(hour=9, minute=0, second=0, microsecond=0)
    clock = MovedClock(begin)
    quiet = settings.model_copy(
        update={
            "seed_demo": False,
            "renewal_poll_s": 3600.0,  # renewals are run by the driver, on the moved clock
            "signal_webhook_urls": [],
        }
    )
    app = create_app(quiet, clock=clock, engine=engine)
    driver = _Driver(app, clock)
    # Its own thread and event loop: the caller may be inside one already (a test's browser).
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, driver.run(events, begin, end)).result()
    return HistoryReport(accounts=accounts, requests=driver.requests, seeded=True)


class _Driver:
    def __init__(self, app: Any, clock: MovedClock) -> None:
        self.app = app
        self.clock = clock
        self.requests = 0
        self.seats: dict[str, int] = {}  # seats bought, as the last answer said
        self.client: httpx.AsyncClient | None = None
        with transaction(app.state.session_factory) as session:
            # An admin key for the driver alone, revoked when the history is written.
            raw = create_key(session, clock, HISTORY_KEY_NAME, frozenset({Scope.admin}))
        self.headers = {"Authorization": f"Bearer {raw}"}

    async def run(self, events: list[Event], begin: datetime, end: datetime) -> None:
        """The service as it runs (its start-up and shutdown included), driven in process."""
        transport = httpx.ASGITransport(app=self.app)
        try:
            async with (
                self.app.router.lifespan_context(self.app),
                httpx.AsyncClient(transport=transport, base_url="http://history") as client,
            ):
                self.client = client
                await self.play(events, begin)
                self.clock.instant = end
                self.renew()
        finally:
            self.close()

    def close(self) -> None:
        with transaction(self.app.state.session_factory) as session:
            for row in list_keys(session):
                if row.name == HISTORY_KEY_NAME and row.revoked_at is None:
                    revoke_key(session, self.clock, row.id)

    async def call(
        self,
        method: str,
        path: str,
        ok: tuple[int, ...],
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> Any:
        self.requests += 1
        headers = dict(self.headers)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        assert self.client is not None
        response = await self.client.request(method, path, headers=headers, json=json)
        if response.status_code not in ok:
            raise RuntimeError(
                f"demo history: {method} {path} -> {response.status_code}: {response.text}"
            )
        return response.json() if response.content else None

    def renew(self) -> None:
        state = self.app.state
        renew_due_accounts(
            state.session_factory, state.catalog, state.billing_gateways, self.clock.now()
        )

    async def play(self, events: list[Event], begin: datetime) -> None:
        swept = -RENEWAL_SWEEP_DAYS
        day, in_day = -1, 0
        for event in events:
            if event.day != day:
                day, in_day = event.day, 0
                if day - swept >= RENEWAL_SWEEP_DAYS:
                    # The renewal worker's round (an account a request touches renews anyway).
                    self.clock.instant = begin + timedelta(days=day)
                    self.renew()
                    swept = day
            # Events of one day happen a minute apart, in script order; time only moves on.
            in_day += 1
            self.clock.instant = begin + timedelta(days=day, minutes=in_day)
            await getattr(self, event.action.value)(event)

    def account_path(self, event: Event) -> str:
        return f"/v1/accounts/{event.account_id}"

    async def plan(self, event: Event) -> dict[str, Any]:
        return await self.call("GET", self.account_path(event), (200,))

    async def put(self, event: Event, **changes: Any) -> None:
        current = await self.plan(event)
        body = {
            "tier": current["tier"],
            "interval": current["interval"],
            "seats": current["seats"],
            "addons": current["addons"],
            "name": current["name"],
            **changes,
        }
        await self.call("PUT", self.account_path(event), (200,), json=body)

    async def open(self, event: Event) -> None:
        body = {
            "tier": event.args["tier"],
            "seats": event.args["seats"],
            "name": event.args["name"],
        }
        account = await self.call("PUT", self.account_path(event), (201,), json=body)
        self.seats[event.account_id] = account["seats"]

    async def activate(self, event: Event) -> None:
        milestone = self.app.state.catalog.signals.activation_milestone
        await self.call(
            "POST",
            f"{self.account_path(event)}/milestones",
            (200,),
            json={"milestones": [{"name": milestone}]},
        )

    async def use(self, event: Event) -> None:
        # Seats in use never pass the seats bought: a growing team fills them, then the offers
        # ask for more.
        usage = [("seats", min(event.args["seats"], self.seats[event.account_id]))]
        if event.args["api_calls"]:
            usage.append(("api_calls", event.args["api_calls"]))
        events = [
            {
                "event_id": f"{event.account_id}-{event.day}-{feature}",
                "account_id": event.account_id,
                "feature": feature,
                "quantity": quantity,
                "action": "set",
                "timestamp": self.clock.now().isoformat(),
            }
            for feature, quantity in usage
        ]
        await self.call("POST", "/v1/usage", (200,), json={"events": events})

    async def browse(self, event: Event) -> None:
        page = await self.call("GET", f"{self.account_path(event)}/upgrade-offers", (200,))
        offers = [o for o in page["offers"] if o.get("offer_token")]
        if not offers or not event.args["seen"]:
            return
        top = offers[min(event.args["pick"], len(offers) - 1)]
        await self.call("PUT", f"{self.account_path(event)}/seen-offers/{top['id']}", (200,))
        if event.args["accept"]:
            upgrade = await self.call(
                "POST",
                f"{self.account_path(event)}/upgrades",
                (200,),
                json={"offer_token": top["offer_token"]},
                idempotency_key=f"history-{top['id']}",
            )
            self.seats[event.account_id] = upgrade["target"]["seats"]

    async def downgrade(self, event: Event) -> None:
        account = await self.plan(event)
        minimum = self.app.state.catalog.tiers[account["tier"]].seats.included
        seats = max(minimum, account["seats"] - event.args["fewer_seats"])
        if seats >= account["seats"] or account["status"] != "active":
            return
        await self.call(
            "POST",
            f"{self.account_path(event)}/upgrades",
            (200,),
            json={"target": {"seats": seats}},
            idempotency_key=f"history-{event.account_id}-{event.day}",
        )

    async def cancel(self, event: Event) -> None:
        await self.put(event, status="canceled")

    async def reactivate(self, event: Event) -> None:
        await self.put(event, status="active")
