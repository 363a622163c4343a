"""Reading the ledger back: entries page by page, verifying the hash chain and the rollup."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from service.adapters.ledger_report_sql import month_flow_rows, rebuild_month_flows
from service.adapters.ledger_repository import (
    CHAIN_COLUMNS,
    LedgerRepository,
    TimeWindow,
    chain_batches,
)
from service.adapters.ledger_tables import LedgerEntryRow
from service.domain.errors import ValidationFailed
from service.domain.ledger import GENESIS_HASH, Engine, MovementKind, verify_chain


class InvalidCursor(ValidationFailed):
    code = "invalid_cursor"


# --- reading entries back ----------------------------------------------------------------------

_CURSOR_PREFIX = "le1:"


def encode_cursor(entry_id: int) -> str:
    raw = f"{_CURSOR_PREFIX}{entry_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The entry id a cursor points after; InvalidCursor (422) for any cursor not issued here."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    digits = raw.removeprefix(_CURSOR_PREFIX)
    if not raw.startswith(_CURSOR_PREFIX) or not digits.isdigit() or len(digits) > 19:
        raise InvalidCursor("cursor is not one this API issued", field="cursor")
    return int(digits)


@dataclass(frozen=True, slots=True)
class EntryFilters:
    start: datetime | None = None
    end: datetime | None = None
    account_id: str | None = None
    kind: MovementKind | None = None
    engine: Engine | None = None


@dataclass(frozen=True, slots=True)
class EntryPage:
    entries: list[LedgerEntryRow]
    next_cursor: str | None


def list_entries(
    session: Session, filters: EntryFilters, *, cursor: str | None, limit: int
) -> EntryPage:
    """One page of entries in ledger order; `next_cursor` is None on the last page."""
    if filters.start and filters.end and filters.end <= filters.start:
        raise ValidationFailed("'to' must be after 'from'", field="to")
    conditions = TimeWindow(filters.start, filters.end).conditions()
    if filters.account_id is not None:
        conditions.append(LedgerEntryRow.account_id == filters.account_id)
    if filters.kind is not None:
        conditions.append(LedgerEntryRow.kind == filters.kind.value)
    if filters.engine is not None:
        conditions.append(LedgerEntryRow.engine == filters.engine.value)
    after_id = None if cursor is None else decode_cursor(cursor)
    rows = LedgerRepository(session).page(conditions, after_id=after_id, limit=limit + 1)
    more = len(rows) > limit
    entries = rows[:limit]
    return EntryPage(entries, encode_cursor(entries[-1].id) if more else None)


# --- verifying the chain -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of `verify_ledger`: rows read, and the first row that does not match."""

    rows_checked: int
    first_bad_id: int | None
    head_hash: str | None

    @property
    def ok(self) -> bool:
        return self.first_bad_id is None


def _record(row: Any) -> Mapping[str, object]:
    return {name: row[index + 1] for index, name in enumerate(CHAIN_COLUMNS)}


def verify_ledger(
    connection: Connection,
    *,
    batch_size: int = 5_000,
    on_batch: Callable[[int], None] | None = None,
) -> ChainReport:
    """Recompute the hash chain in ledger order, batch by batch, in constant memory.

    A row fails when its content no longer hashes to its stored hash, or when its stored
    prev_hash is not the previous row's hash (a row removed or inserted before it).
    """
    prev = GENESIS_HASH
    checked = 0
    for batch in chain_batches(connection, after_id=0, batch_size=batch_size):
        bad = verify_chain(((_record(row), row.hash) for row in batch), prev_hash=prev)
        link = prev
        for index, row in enumerate(batch[: len(batch) if bad is None else bad]):
            if row.prev_hash != link:
                bad = index
                break
            link = row.hash
        if bad is not None:
            return ChainReport(checked + bad, batch[bad].id, prev)
        checked += len(batch)
        prev = batch[-1].hash
        if on_batch is not None:
            on_batch(len(batch))
    return ChainReport(checked, None, None if checked == 0 else prev)


# --- the monthly rollup ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RollupCheck:
    rows: int  # rollup rows after the rebuild
    matched: bool  # whether the rollup kept by the writes equalled the rebuild


def rebuild_rollup(connection: Connection, *, keep: bool) -> RollupCheck:
    """Recompute the monthly rollup from the entries and compare it with the one the writes
    kept; `keep` commits the rebuilt one, else it is rolled back (a check only)."""
    with connection.begin() as transaction:
        before = month_flow_rows(connection)
        rows = rebuild_month_flows(connection)
        matched = month_flow_rows(connection) == before
        if not keep:
            transaction.rollback()
    return RollupCheck(rows, matched)
