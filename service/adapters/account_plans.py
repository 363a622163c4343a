"""Every live account's plan and status, streamed with one query (a catalog diff reads them all),
and the accounts a catalog migration looks at."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Row, String, cast, select

from service.adapters.orm import AccountRow
from service.domain.accounts import AccountStatus

# (id, tier, interval, seats, add-ons as their stored JSON text, status): the add-ons stay text
# so that accounts with equal plans group without decoding each row's JSON.
PLAN_COLUMNS = (
    AccountRow.id,
    AccountRow.tier,
    AccountRow.interval,
    AccountRow.seats,
    cast(AccountRow.addons, String),
    AccountRow.status,
)


def stream_account_plans(
    connection: Connection, *, batch_size: int = 10_000, catalog_version: str | None = None
) -> Iterator[Sequence[Row[Any]]]:
    """Batches of live accounts' plan rows (not canceled; priced at `catalog_version` when
    given), read with one server-side cursor on PostgreSQL (stream_results), in no particular
    order."""
    statement = select(*PLAN_COLUMNS).where(AccountRow.status != AccountStatus.canceled.value)
    if catalog_version is not None:
        statement = statement.where(AccountRow.catalog_version == catalog_version)
    result = connection.execution_options(stream_results=True, yield_per=batch_size).execute(
        statement
    )
    yield from result.partitions()


def account_versions(
    connection: Connection, *, tier: str | None = None
) -> Iterator[tuple[str, str, str]]:
    """(id, catalog version, limits version) of every live account (of `tier` when given), by
    id: what a catalog migration starts from, one streaming query."""
    statement = (
        select(AccountRow.id, AccountRow.catalog_version, AccountRow.limits_version)
        .where(AccountRow.status != AccountStatus.canceled.value)
        .order_by(AccountRow.id)
    )
    if tier is not None:
        statement = statement.where(AccountRow.tier == tier)
    result = connection.execution_options(stream_results=True, yield_per=10_000).execute(statement)
    for account_id, catalog_version, limits_version in result:
        yield str(account_id), str(catalog_version), str(limits_version)
