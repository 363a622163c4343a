"""Finance exports of the ledger (CSV, JSONL, Parquet), streamed in batches in constant memory."""

from __future__ import annotations

import csv
import io
import itertools
import json
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from service.adapters.billing_repository import credit_batches
from service.adapters.ledger_export_sql import (
    EXPORT_SOURCE,
    copy_csv,
    copy_csv_statement,
    count_entries,
    export_batches,
)
from service.adapters.ledger_repository import TimeWindow
from service.domain.errors import DomainError, ValidationFailed
from service.domain.money import minor_exponent


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


class Dataset(StrEnum):
    MOVEMENTS = "movements"  # the ledger's MRR movements
    CREDIT = "credit"  # the customers' credit balances as invoices moved them


MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSONL: "application/x-ndjson",
}


class ParquetUnavailable(DomainError):
    code = "parquet_unavailable"
    title = "Parquet export unavailable"
    status = 501


# Every export column with what it means; the endpoint description and the README list these.
EXPORT_COLUMNS: dict[str, str] = {
    "id": "ledger sequence number; rows are in this (append) order",
    "occurred_at": "when the MRR moved, UTC ISO-8601 with microseconds and Z",
    "recorded_at": "when the row was written, same format",
    "account_id": "the product's account id",
    "kind": "new, expansion, contraction, churn or reactivation",
    "engine": "seat, upsell, addon, strategic or price_uplift for expansion/contraction, "
    "else empty",
    "currency": "ISO 4217 code; never mix currencies when summing",
    "mrr_before_minor": "MRR before the movement, integer minor units (cents)",
    "mrr_before": "the same as a decimal in major units, for spreadsheets",
    "mrr_after_minor": "MRR after the movement, integer minor units",
    "mrr_after": "the same as a decimal",
    "mrr_delta_minor": "mrr_after_minor - mrr_before_minor (negative for losses)",
    "mrr_delta": "the same as a decimal",
    "source": "self_serve_offer, api, webhook or admin",
    "motion": "self_serve, cs_assisted or sales_assisted",
    "offer_id": "the accepted upgrade offer, if any",
    "signal_ids": "the expansion signals behind it, a JSON array of strings",
    "days_since_activation": "days from the activation milestone, empty if not reached",
    "stripe_invoice_id": "Stripe invoice, if billed through Stripe",
    "stripe_subscription_id": "Stripe subscription, if any",
    "catalog_version": "the catalog version the account's plan is priced at after the movement",
    "idempotency_key": "the writer's key; unique",
    "prev_hash": "hash of the previous row (64 zeros for the first)",
    "hash": "sha256 of prev_hash and this row's canonical JSON",
}
# The credit dataset: one row per invoice that moved a customer's credit balance (local
# billing; Stripe keeps its customers' balances itself).
CREDIT_COLUMNS: dict[str, str] = {
    "invoice_id": "the invoice that moved the balance",
    "occurred_at": "the invoice's time, UTC ISO-8601 with microseconds and Z",
    "account_id": "the product's account id",
    "kind": "granted (a change whose total was negative) or applied (an invoice paid from it)",
    "currency": "ISO 4217 code",
    "amount_minor": "the balance's change, integer minor units (negative when applied)",
    "amount": "the same as a decimal in major units",
    "balance_after_minor": "the account's credit balance after it, integer minor units",
    "balance_after": "the same as a decimal",
}
_DECIMAL_COLUMNS = ("mrr_before", "mrr_after", "mrr_delta")
_SOURCE_INDEX = {name: index for index, name in enumerate(EXPORT_SOURCE)}
# Flush the COPY path's rows to the client in chunks of about this many bytes.
_CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class ExportChunk:
    data: bytes
    rows: int


@cache
def zero_decimal_currencies() -> frozenset[str]:
    """Currencies whose minor unit is the major unit, for the SQL twin of decimal_text."""
    # money exposes only minor_exponent(code); asking it about every possible code is cheap.
    letters = string.ascii_uppercase
    codes = ("".join(code) for code in itertools.product(letters, repeat=3))
    return frozenset(code for code in codes if minor_exponent(code) == 0)


def decimal_text(minor: int, currency: str) -> str:
    """format(Money(minor, currency).to_decimal(), "f") without building Decimals per cell."""
    exponent = minor_exponent(currency)
    if exponent == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole}.{cents:0{exponent}d}"


def utc_text(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def export_values(row: Sequence[Any]) -> list[Any]:
    """One raw export row (EXPORT_SOURCE order) as the EXPORT_COLUMNS values, text-formatted.

    Spelled out rather than driven by the column table: this runs once per exported row.
    """
    (
        entry_id,
        occurred_at,
        recorded_at,
        account_id,
        kind,
        engine,
        currency,
        before,
        after,
        delta,
        *rest,
    ) = row
    return [
        entry_id,
        utc_text(occurred_at),
        utc_text(recorded_at),
        account_id,
        kind,
        engine,
        currency,
        before,
        decimal_text(before, currency),
        after,
        decimal_text(after, currency),
        delta,
        decimal_text(delta, currency),
        *rest,
    ]


def credit_values(row: Sequence[Any]) -> list[Any]:
    """One credit_batches row as the CREDIT_COLUMNS values, text-formatted."""
    invoice_id, created_at, account_id, currency, granted, applied, balance = row
    amount = granted - applied
    return [
        invoice_id,
        utc_text(created_at),
        account_id,
        "granted" if granted else "applied",
        currency,
        amount,
        decimal_text(amount, currency),
        int(balance),
        decimal_text(int(balance), currency),
    ]


def _credit(export_format: ExportFormat) -> Callable[..., Iterator[ExportChunk]]:
    def produce(
        connection: Connection, window: TimeWindow, batch_size: int
    ) -> Iterator[ExportChunk]:
        names = list(CREDIT_COLUMNS)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if export_format is ExportFormat.CSV:
            writer.writerow(names)
        batches = credit_batches(connection, window.start, window.end, batch_size=batch_size)
        for batch in batches:
            rows = map(credit_values, batch)
            if export_format is ExportFormat.CSV:
                writer.writerows(rows)
            else:
                for values in rows:
                    buffer.write(
                        json.dumps(dict(zip(names, values, strict=True)), separators=(",", ":"))
                    )
                    buffer.write("\n")
            yield ExportChunk(buffer.getvalue().encode(), len(batch))
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():  # only the header: an empty export
            yield ExportChunk(buffer.getvalue().encode(), 0)

    return produce


def _csv_python(
    connection: Connection, window: TimeWindow, batch_size: int
) -> Iterator[ExportChunk]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for batch in export_batches(connection, window, batch_size=batch_size):
        writer.writerows(map(export_values, batch))
        yield ExportChunk(buffer.getvalue().encode(), len(batch))
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # only the header: an empty export
        yield ExportChunk(buffer.getvalue().encode(), 0)


def _csv_copy(connection: Connection, window: TimeWindow, batch_size: int) -> Iterator[ExportChunk]:
    statement, params = copy_csv_statement(
        connection, window, columns=list(EXPORT_COLUMNS), zero_decimal=zero_decimal_currencies()
    )
    header = True
    chunks = copy_csv(connection, statement, params, chunk_bytes=_CHUNK_BYTES, max_rows=batch_size)
    for data, rows in chunks:
        yield ExportChunk(data, rows - header)  # the first row of the first chunk is the header
        header = False


def _jsonl(connection: Connection, window: TimeWindow, batch_size: int) -> Iterator[ExportChunk]:
    names = list(EXPORT_COLUMNS)
    signals = names.index("signal_ids")
    for batch in export_batches(connection, window, batch_size=batch_size):
        lines = []
        for row in batch:
            values = export_values(row)
            values[signals] = json.loads(values[signals])
            lines.append(json.dumps(dict(zip(names, values, strict=True)), separators=(",", ":")))
        lines.append("")
        yield ExportChunk("\n".join(lines).encode(), len(batch))


def stream_export(
    engine: Engine,
    export_format: ExportFormat,
    window: TimeWindow,
    *,
    batch_size: int = 10_000,
    use_copy: bool | None = None,
    dataset: Dataset = Dataset.MOVEMENTS,
) -> Iterator[ExportChunk]:
    """The export as byte chunks, read over one connection of its own, in ledger order.

    CSV on PostgreSQL uses `COPY … TO STDOUT` (unless `use_copy` is False); elsewhere rows are
    formatted here. Both paths print the same bytes. The credit dataset is small (an invoice
    moves credit only after a change whose total was negative) and is formatted here.
    """
    if window.start and window.end and window.end <= window.start:
        raise ValidationFailed("'to' must be after 'from'", field="to")
    if export_format is ExportFormat.PARQUET:
        raise ValidationFailed("parquet is written to a file: use export_to_file", field="format")
    if use_copy is None:
        use_copy = engine.dialect.name == "postgresql"
    produce = _jsonl
    if dataset is Dataset.CREDIT:
        produce = _credit(export_format)
    elif export_format is ExportFormat.CSV:
        produce = _csv_copy if use_copy else _csv_python
    with engine.connect() as connection:
        yield from produce(connection, window, batch_size)


def count_rows(engine: Engine, window: TimeWindow, dataset: Dataset = Dataset.MOVEMENTS) -> int:
    with engine.connect() as connection:
        if dataset is Dataset.CREDIT:
            batches = credit_batches(connection, window.start, window.end, batch_size=10_000)
            return sum(len(batch) for batch in batches)
        return count_entries(connection, window)


def _pyarrow() -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet, or ParquetUnavailable: parquet is an optional extra."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ParquetUnavailable(
            "parquet export needs pyarrow: pip install -e '.[parquet]' in a source checkout "
            "(pip install 'upshift[parquet]' from a package index)",
            field="format",
        ) from None
    return pyarrow, pyarrow.parquet


def _write_parquet(
    engine: Engine, window: TimeWindow, path: Path, batch_size: int, on_rows: Callable[[int], None]
) -> int:
    pa, pq = _pyarrow()

    timestamp = pa.timestamp("us", tz="UTC")
    money = pa.decimal128(38, 2)  # no currency has more than two decimals (domain.money)
    types: dict[str, Any] = {name: pa.string() for name in EXPORT_COLUMNS}
    types |= {"id": pa.int64(), "occurred_at": timestamp, "recorded_at": timestamp}
    types |= {f"{name}_minor": pa.int64() for name in _DECIMAL_COLUMNS}
    types |= {name: money for name in _DECIMAL_COLUMNS}
    types |= {"signal_ids": pa.list_(pa.string()), "days_since_activation": pa.int32()}
    schema = pa.schema([(name, types[name]) for name in EXPORT_COLUMNS])
    written = 0
    with engine.connect() as connection, pq.ParquetWriter(path, schema) as writer:
        for batch in export_batches(connection, window, batch_size=batch_size):
            columns: dict[str, list[Any]] = {name: [] for name in EXPORT_COLUMNS}
            for row in batch:
                for name in EXPORT_COLUMNS:
                    if name in _DECIMAL_COLUMNS:
                        value: Any = _parquet_decimal(row, name)
                    elif name == "signal_ids":
                        value = json.loads(row[_SOURCE_INDEX[name]])
                    else:
                        value = row[_SOURCE_INDEX[name]]
                    columns[name].append(value)
            writer.write_table(pa.table(columns, schema=schema))
            written += len(batch)
            on_rows(len(batch))
    return written


def _parquet_decimal(row: Sequence[Any], name: str) -> Decimal:
    return Decimal(
        decimal_text(row[_SOURCE_INDEX[f"{name}_minor"]], row[_SOURCE_INDEX["currency"]])
    )


def export_to_file(
    engine: Engine,
    export_format: ExportFormat,
    window: TimeWindow,
    path: Path,
    *,
    batch_size: int = 10_000,
    on_rows: Callable[[int], None] = lambda _rows: None,
    dataset: Dataset = Dataset.MOVEMENTS,
) -> int:
    """Write the export to `path`; returns the number of rows. Parquet needs pyarrow, and is
    written of the movements only."""
    if export_format is ExportFormat.PARQUET:
        if dataset is not Dataset.MOVEMENTS:
            raise ValidationFailed("the credit dataset is exported as csv or jsonl", field="format")
        return _write_parquet(engine, window, path, batch_size, on_rows)
    written = 0
    with path.open("wb") as output:
        chunks = stream_export(
            engine, export_format, window, batch_size=batch_size, dataset=dataset
        )
        for chunk in chunks:
            output.write(chunk.data)
            written += chunk.rows
            on_rows(chunk.rows)
    return written
