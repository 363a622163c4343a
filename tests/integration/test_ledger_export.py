"""Export paths agree byte for byte (COPY and Python on PostgreSQL), and `upshift ledger export`
writes CSV, JSONL and, with pyarrow, Parquet."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text

from service.adapters.db import make_session_factory, transaction
from service.adapters.ledger_export_sql import CopyFailed, copy_csv
from service.adapters.ledger_repository import TimeWindow
from service.adapters.ledger_tables import LedgerEntryRow
from service.cli import main
from service.domain.ledger import Attribution, Motion, Source
from service.services.ledger import record_movement
from service.services.ledger_export import EXPORT_COLUMNS, ExportFormat, stream_export
from tests.ledger_fixtures import at, skip_unless_postgres

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


def awkward_history(engine: Engine, count: int = 23) -> list[LedgerEntryRow]:
    """Rows with every formatting hazard: quotes, commas, newlines, non-ASCII, microseconds,
    zero-decimal currencies, negative deltas, nulls and signal lists."""
    recorded = []
    with transaction(make_session_factory(engine)) as session:
        mrr: dict[str, int] = {}
        for number in range(count):
            account = f"acct,{number % 5}" if number % 3 else f'ac"me é {number % 5}'
            currency = "JPY" if number % 5 == 4 else "USD"
            before = mrr.get(account, 0)
            after = 0 if number % 7 == 6 else before + 1_005 * (number + 1)
            row = record_movement(
                session,
                account_id=account,
                currency=currency,
                mrr_before=before,
                mrr_after=after,
                before=None,
                after=None,
                source=Source.WEBHOOK,
                idempotency_key=f'key {number}\n"quoted", ok',
                occurred_at=at(2026, 1, 1 + number) + timedelta(microseconds=number * 7),
                catalog_version="2026-11-01.1",
                attribution=Attribution(
                    motion=Motion.SELF_SERVE,
                    offer_id=f"off_{number}" if number % 2 else None,
                    signal_ids=tuple(f"sig,{n}" for n in range(number % 3)),
                    days_since_activation=number if number % 4 else None,
                ),
                stripe_invoice_id="in_1" if number % 2 else None,
            )
            mrr[account] = after
            if row is not None:
                recorded.append(row)
    return recorded


def exported(engine: Engine, export_format: ExportFormat, **options) -> bytes:
    return b"".join(
        chunk.data for chunk in stream_export(engine, export_format, TimeWindow(), **options)
    )


def test_copy_and_python_csv_are_identical_on_postgres(db: Engine) -> None:
    skip_unless_postgres(db)
    count = len(awkward_history(db))
    python = exported(db, ExportFormat.CSV, use_copy=False, batch_size=4)
    copy = exported(db, ExportFormat.CSV, use_copy=True, batch_size=4)
    assert copy == python
    rows = list(csv.reader(io.StringIO(python.decode())))
    assert len(rows) == count + 1 and rows[0] == list(EXPORT_COLUMNS)


def test_chunks_count_their_rows(db: Engine) -> None:
    count = len(awkward_history(db))
    for export_format in (ExportFormat.CSV, ExportFormat.JSONL):
        chunks = list(stream_export(db, export_format, TimeWindow(), batch_size=5))
        assert sum(chunk.rows for chunk in chunks) == count
        assert len(chunks) >= count // 5


def copy_lines(db: Engine, statement: str, rows: list[bytes]) -> None:
    with db.connect() as connection:
        for data, _ in copy_csv(connection, statement, {}, chunk_bytes=1, max_rows=1):
            rows.append(data)


def test_a_copy_that_fails_midway_raises_and_the_pool_stays_usable(db: Engine) -> None:
    skip_unless_postgres(db)
    rows: list[bytes] = []
    failing = "COPY (SELECT 10 / (5 - x) FROM generate_series(1, 9) x) TO STDOUT"
    with pytest.raises(CopyFailed, match="division by zero"):
        copy_lines(db, failing, rows)
    assert rows == [b"2\n", b"3\n", b"5\n", b"10\n"]  # what was sent before the error
    with pytest.raises(CopyFailed, match="no_such_table"):
        copy_lines(db, "COPY (SELECT * FROM no_such_table) TO STDOUT", [])
    rows.clear()
    copy_lines(db, "COPY (SELECT x FROM generate_series(1, 3) x) TO STDOUT", rows)
    assert rows == [b"1\n", b"2\n", b"3\n"]


def test_an_export_stopped_early_does_not_return_its_connection_mid_copy(db: Engine) -> None:
    skip_unless_postgres(db)
    awkward_history(db)
    whole = exported(db, ExportFormat.CSV)
    for _ in range(3):  # more times than the pool would hand out a broken connection
        chunks = stream_export(db, ExportFormat.CSV, TimeWindow(), batch_size=2)
        assert next(chunks).rows == 1  # the header and the first row
        chunks.close()  # the client went away
    assert exported(db, ExportFormat.CSV) == whole
    assert db.pool.checkedout() == 0


def test_csv_and_jsonl_carry_the_same_values(db: Engine) -> None:
    count = len(awkward_history(db))
    rows = list(csv.DictReader(io.StringIO(exported(db, ExportFormat.CSV).decode())))
    lines = [json.loads(line) for line in exported(db, ExportFormat.JSONL).decode().splitlines()]
    assert len(rows) == len(lines) == count
    for row, line in zip(rows, lines, strict=True):
        assert row["idempotency_key"] == line["idempotency_key"]
        assert json.loads(row["signal_ids"]) == line["signal_ids"]
        assert row["mrr_delta"] == line["mrr_delta"]
        assert int(row["mrr_delta_minor"]) == line["mrr_delta_minor"]
    assert lines[1]["signal_ids"] == ["sig,0"]


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", database_url)
    return CliRunner()


@pytest.mark.parametrize("export_format", ["csv", "jsonl"])
def test_cli_export_writes_the_file(
    db: Engine, cli: CliRunner, tmp_path: Path, export_format: str
) -> None:
    rows = awkward_history(db)
    start, end = at(2026, 1, 3, 0), at(2026, 1, 10, 0)
    expected = [row for row in rows if start <= row.occurred_at < end]
    output = tmp_path / f"ledger.{export_format}"
    arguments = ["--from", "2026-01-03", "--to", "2026-01-10T00:00:00Z", "-o", str(output)]
    result = cli.invoke(main, ["ledger", "export", "--format", export_format, *arguments])
    assert result.exit_code == 0, result.output
    assert f"wrote {len(expected)} rows to {output}" in result.output
    first = f'{{"id":{expected[0].id},' if export_format == "jsonl" else "id,"
    assert output.read_text().startswith(first)


def test_cli_export_refuses_naive_times(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(
        main, ["ledger", "export", "--from", "2026-01-03T10:00", "-o", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "give an offset" in result.output


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow (the parquet extra) is not installed")
def test_cli_export_parquet(db: Engine, cli: CliRunner, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    rows = awkward_history(db)
    output = tmp_path / "ledger.parquet"
    result = cli.invoke(main, ["ledger", "export", "--format", "parquet", "-o", str(output)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(output)
    assert table.column_names == list(EXPORT_COLUMNS) and table.num_rows == len(rows)
    second = table.slice(1, 1).to_pylist()[0]
    assert second["signal_ids"] == ["sig,0"] == rows[1].signal_ids
    assert str(second["mrr_after"]) == "20.10" and second["mrr_after_minor"] == 2_010
    assert second["occurred_at"] == rows[1].occurred_at
    assert second["occurred_at"].isoformat() == "2026-01-02T12:00:00.000007+00:00"


@pytest.mark.skipif(HAS_PYARROW, reason="pyarrow is installed")
def test_cli_export_parquet_without_pyarrow_says_how_to_get_it(
    db: Engine, cli: CliRunner, tmp_path: Path
) -> None:
    output = tmp_path / "ledger.parquet"
    result = cli.invoke(main, ["ledger", "export", "--format", "parquet", "-o", str(output)])
    assert result.exit_code == 1
    assert "parquet export needs pyarrow: pip install -e '.[parquet]' in a source" in result.output
    assert not output.exists()


def test_cli_exports_the_credit_dataset_and_refuses_it_as_parquet(
    db: Engine, cli: CliRunner, tmp_path: Path
) -> None:
    with db.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (id, tier, interval, seats, addons, currency, status, "
                "current_period_start, current_period_end, credit_balance_minor, version, "
                "catalog_version, limits_version, created_at, updated_at) VALUES ('acme', "
                "'growth', 'month', 5, '{}', 'EUR', 'active', :t, :t, 0, 1, '2026-11-01.1', "
                "'2026-11-01.1', :t, :t)"
            ),
            {"t": at(2026, 1, 1)},
        )
        for number, (due, applied) in enumerate([(-1_250, 0), (3_000, 1_000), (3_000, 250)]):
            connection.execute(
                text(
                    "INSERT INTO invoices (id, account_id, billing_reason, status, currency, "
                    "amount_due_minor, credit_applied_minor, amount_paid_minor, period_start, "
                    "period_end, created_at) VALUES (:id, 'acme', 'x', 'paid', 'EUR', :due, "
                    ":applied, 0, :t, :t, :t)"
                ),
                {
                    "id": f"in_{number}",
                    "due": due,
                    "applied": applied,
                    "t": at(2026, 1, 2 + number),
                },
            )
    output = tmp_path / "credit.csv"
    result = cli.invoke(main, ["ledger", "export", "--dataset", "credit", "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert f"wrote 3 rows to {output}" in result.output
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in rows] == [
        ("granted", "12.50", "12.50"),
        ("applied", "-10.00", "2.50"),
        ("applied", "-2.50", "0.00"),
    ]
    parquet = cli.invoke(
        main, ["ledger", "export", "--dataset", "credit", "--format", "parquet", "-o", str(output)]
    )
    assert parquet.exit_code == 1 and "exported as csv or jsonl" in parquet.output
