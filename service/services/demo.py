"""The demo account and a fresh admin key, for the embedded default and the /demo page."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from service.adapters.billing_local import LocalBillingGateway
from service.adapters.db import transaction
from service.adapters.repositories import AccountRepository
from service.domain.catalog import Catalog, Interval
from service.ports import Clock
from service.services.accounts import AccountInput, put_account
from service.services.api_keys import Scope, create_key

DEMO_ACCOUNT_ID = "demo"


def seed_demo(factory: sessionmaker[Session], catalog: Catalog, clock: Clock) -> str:
    """Create the demo account unless it exists, and return a new admin key for it."""
    with transaction(factory) as session:
        if AccountRepository(session).get(DEMO_ACCOUNT_ID) is None:
            tier_key, tier = min(
                ((k, t) for k, t in catalog.tiers.items() if t.self_serve),
                key=lambda item: item[1].rank,
            )
            interval = Interval.month if Interval.month in tier.prices else next(iter(tier.prices))
            put_account(
                session,
                catalog,
                clock,
                DEMO_ACCOUNT_ID,
                AccountInput(
                    name="Demo Co.", tier=tier_key, interval=interval, seats=tier.seats.included
                ),
                gateway=LocalBillingGateway(session, frozenset()),  # the demo bills locally
            )
        return create_key(session, clock, "demo", frozenset({Scope.admin}))
