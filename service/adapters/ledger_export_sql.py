"""The ledger export's SQL: the rows finance exports, in batches or as PostgreSQL COPY of CSV."""

from __future__ import annotations

import selectors
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from sqlalchemy import (
    ColumnElement,
    Connection,
    Numeric,
    Row,
    Select,
    String,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
)

from service.adapters.ledger_repository import TimeWindow
from service.adapters.ledger_tables import LedgerEntryRow

E = LedgerEntryRow

# The raw columns an export reads, in export order; `signal_ids` comes as its stored JSON text so
# the Python and COPY paths print the same characters.
EXPORT_SOURCE: dict[str, Any] = {
    "id": E.id,
    "occurred_at": E.occurred_at,
    "recorded_at": E.recorded_at,
    "account_id": E.account_id,
    "kind": E.kind,
    "engine": E.engine,
    "currency": E.currency,
    "mrr_before_minor": E.mrr_before_minor,
    "mrr_after_minor": E.mrr_after_minor,
    "mrr_delta_minor": E.mrr_delta_minor,
    "source": E.source,
    "motion": E.motion,
    "offer_id": E.offer_id,
    "signal_ids": cast(E.signal_ids, String),
    "days_since_activation": E.days_since_activation,
    "stripe_invoice_id": E.stripe_invoice_id,
    "stripe_subscription_id": E.stripe_subscription_id,
    "catalog_version": E.catalog_version,
    "idempotency_key": E.idempotency_key,
    "prev_hash": E.prev_hash,
    "hash": E.hash,
}


def export_select(window: TimeWindow) -> Select[Any]:
    return select(*EXPORT_SOURCE.values()).where(*window.conditions()).order_by(E.id)


def export_batches(
    connection: Connection, window: TimeWindow, *, batch_size: int
) -> Iterator[Sequence[Row]]:
    """Export rows as plain tuples in batches, over a server-side cursor where there is one."""
    result = connection.execution_options(stream_results=True, yield_per=batch_size).execute(
        export_select(window)
    )
    yield from result.partitions()


def count_entries(connection: Connection, window: TimeWindow) -> int:
    return connection.scalar(select(func.count()).select_from(E).where(*window.conditions())) or 0


def _utc_text(column: Any) -> ColumnElement[str]:
    # ISO-8601 with microseconds and Z, as the ledger hashes it (domain.ledger.canonical_bytes).
    return func.to_char(func.timezone("UTC", column), literal('YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))


def copy_csv_statement(
    connection: Connection,
    window: TimeWindow,
    *,
    columns: Sequence[str],
    zero_decimal: frozenset[str],
) -> tuple[str, dict[str, Any]]:
    """PostgreSQL `COPY (SELECT …) TO STDOUT` producing `columns` with the header, as CSV.

    Each export column is either a raw ledger column (EXPORT_SOURCE), formatted by PostgreSQL the
    way the Python path formats it, or the decimal twin of a `*_minor` column (named without it).
    """
    expressions = []
    for name in columns:
        if name in ("occurred_at", "recorded_at"):
            expression = _utc_text(EXPORT_SOURCE[name])
        elif name in EXPORT_SOURCE:
            expression = EXPORT_SOURCE[name]
        else:
            expression = _decimal_sql(EXPORT_SOURCE[f"{name}_minor"], zero_decimal)
        expressions.append(expression.label(name))
    statement = select(*expressions).where(*window.conditions()).order_by(E.id)
    compiled = statement.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    return f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, HEADER true)", dict(compiled.params)


def _decimal_sql(column: Any, zero_decimal: frozenset[str]) -> ColumnElement[Any]:
    # numeric * 0.01 has scale 2 exactly, so 0 prints as 0.00 as Decimal formatting does; left
    # numeric (no cast to text) because PostgreSQL prints it faster itself.
    scaled = column * literal_column("0.01")
    return case((E.currency.in_(sorted(zero_decimal)), cast(column, Numeric)), else_=scaled)


class CopyFailed(RuntimeError):
    """PostgreSQL ended a COPY with an error (the message is the server's)."""


def copy_csv(
    connection: Connection,
    statement: str,
    params: dict[str, Any],
    *,
    chunk_bytes: int,
    max_rows: int,
) -> Iterator[tuple[bytes, int]]:
    """The raw output of `COPY … TO STDOUT` in chunks of whole rows, each of about `chunk_bytes`
    and at most `max_rows`: (bytes, rows).

    Reads libpq's buffer directly (psycopg's public `pq` layer): every row PostgreSQL has sent
    is taken in one tight loop and the socket is waited on only when the buffer is empty.
    psycopg's Copy object costs a Python round of generator and wait calls per row, which was
    more CPU than PostgreSQL's own formatting of the row. The connection is discarded if the
    consumer stops early, so the pool never gets back a connection still in COPY.
    """
    driver_connection = connection.connection.driver_connection
    assert isinstance(driver_connection, psycopg.Connection)
    command = psycopg.ClientCursor(driver_connection).mogrify(statement, params)
    pgconn = driver_connection.pgconn
    finished = False
    with selectors.DefaultSelector() as selector:
        selector.register(pgconn.socket, selectors.EVENT_READ)
        try:
            pgconn.send_query(command.encode(driver_connection.info.encoding))
            if pgconn.flush():  # a non-blocking connection may not send it all at once
                selector.modify(pgconn.socket, selectors.EVENT_WRITE)
                while pgconn.flush():
                    selector.select()
                selector.modify(pgconn.socket, selectors.EVENT_READ)
            _await_copy_out(pgconn, selector)
            rows: list[memoryview] = []
            size = 0
            while True:
                nbytes, data = pgconn.get_copy_data(1)
                if nbytes > 0:
                    rows.append(data)
                    size += nbytes
                    if size >= chunk_bytes or len(rows) >= max_rows:
                        yield b"".join(rows), len(rows)
                        rows.clear()
                        size = 0
                elif nbytes == 0:  # nothing buffered: wait for the server
                    selector.select()
                    pgconn.consume_input()
                else:
                    break
            _finish_copy(pgconn, selector, failed=nbytes == -2)
            finished = True
            if rows:
                yield b"".join(rows), len(rows)
        finally:
            if not finished:
                connection.invalidate()


def _next_result(pgconn: Any, selector: selectors.BaseSelector) -> Any:
    while pgconn.is_busy():
        selector.select()
        pgconn.consume_input()
    return pgconn.get_result()


def _error(pgconn: Any, result: Any) -> CopyFailed:
    message = result.error_message if result is not None else pgconn.error_message
    return CopyFailed(bytes(message).decode(errors="replace").strip())


def _await_copy_out(pgconn: Any, selector: selectors.BaseSelector) -> None:
    result = _next_result(pgconn, selector)
    if result is None or result.status != psycopg.pq.ExecStatus.COPY_OUT:
        error = _error(pgconn, result)
        while _next_result(pgconn, selector) is not None:  # leave the connection idle
            pass
        raise error


def _finish_copy(pgconn: Any, selector: selectors.BaseSelector, *, failed: bool) -> None:
    """Read the COPY's final result (and the end of results); raise if it failed."""
    result = _next_result(pgconn, selector)
    while _next_result(pgconn, selector) is not None:
        pass
    if failed or result is None or result.status != psycopg.pq.ExecStatus.COMMAND_OK:
        raise _error(pgconn, result)
