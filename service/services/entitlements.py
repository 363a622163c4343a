"""Entitlements of an account, read in one short transaction (see domain.entitlements)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db import statement_read
from service.domain.catalog import Catalog
from service.domain.entitlements import Entitlements, entitlements_of
from service.services.accounts import get_account
from service.services.usage import usage_snapshot


def read_entitlements(
    factory: sessionmaker[Session],
    catalog: Catalog,
    account_id: str,
    now: datetime,
    *,
    current_only: bool,
) -> Entitlements | None:
    """Every feature's gate at `now`: the tier's limits with add-on grants, against the
    account's counters of their current periods (404 for an unknown account). `current_only`:
    None for an account whose billing period has ended (it is to be renewed first)."""

    def read(session: Session) -> Entitlements | None:
        account = get_account(session, account_id)
        if current_only and account.current_period_end <= now:
            return None
        snapshot = usage_snapshot(session, catalog, account, now)
        return entitlements_of(snapshot, account.current_period_end)

    return statement_read(factory, read)
