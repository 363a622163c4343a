"""The ledger is append-only on PostgreSQL, forms one chain under concurrency, and verify finds
tampering (through the service and `upshift ledger verify`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from service.adapters.db import make_session_factory, transaction
from service.adapters.ledger_tables import APPEND_ONLY_TRIGGER
from service.cli import main
from service.domain.ledger import Engine as LedgerEngine
from service.services.ledger_entries import rebuild_rollup, verify_ledger
from tests.ledger_fixtures import Step, at, entry_count, record, seed, skip_unless_postgres


def history(accounts: int = 3) -> list[Step]:
    steps = []
    for number in range(accounts):
        steps.append(Step(f"acct-{number}", 10_000, at(2026, 1, 1 + number)))
        steps.append(Step(f"acct-{number}", 15_000, at(2026, 2, 1 + number), LedgerEngine.SEAT))
    return steps


@contextmanager
def tampering(engine: Engine) -> Iterator[Connection]:
    """A connection that may edit ledger rows: the trigger is off inside it on PostgreSQL."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text(f"ALTER TABLE ledger_entries DISABLE TRIGGER {APPEND_ONLY_TRIGGER}")
            )
        yield connection
        if engine.dialect.name == "postgresql":
            connection.execute(
                text(f"ALTER TABLE ledger_entries ENABLE TRIGGER {APPEND_ONLY_TRIGGER}")
            )


def verify(engine: Engine, batch_size: int = 2):
    with engine.connect() as connection:
        return verify_ledger(connection, batch_size=batch_size)


def test_update_and_delete_are_refused_on_postgres(db: Engine) -> None:
    skip_unless_postgres(db)
    seed(db, history(1))
    for statement in (
        "UPDATE ledger_entries SET mrr_after_minor = 1 WHERE id = 1",
        "DELETE FROM ledger_entries WHERE id = 1",
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.begin() as connection:
            connection.execute(text(statement))
    assert entry_count(db) == 2
    with db.begin() as connection:  # the test suite's clean-up still works
        connection.execute(text("TRUNCATE ledger_entries RESTART IDENTITY"))
    assert entry_count(db) == 0


def test_verify_names_a_tampered_row(db: Engine) -> None:
    seed(db, history())
    assert verify(db).ok
    with tampering(db) as connection:
        # A consistent forgery: the check constraints still hold, only the hash can tell.
        connection.execute(
            text(
                "UPDATE ledger_entries SET mrr_after_minor = 25000, mrr_delta_minor = 15000 "
                "WHERE id = 4"
            )
        )
    report = verify(db)
    assert (report.first_bad_id, report.rows_checked) == (4, 3)


def test_verify_finds_a_removed_row_at_the_next_one(db: Engine) -> None:
    seed(db, history())
    with tampering(db) as connection:
        connection.execute(text("DELETE FROM ledger_entries WHERE id = 3"))
    assert verify(db).first_bad_id == 4


def test_verify_checks_the_stored_link_too(db: Engine) -> None:
    seed(db, history())
    with tampering(db) as connection:
        connection.execute(text(f"UPDATE ledger_entries SET prev_hash = '{'1' * 64}' WHERE id = 2"))
    assert verify(db, batch_size=10).first_bad_id == 2


def test_cli_verify_exit_codes(db: Engine, database_url: str, monkeypatch) -> None:
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", database_url)
    runner = CliRunner()
    seed(db, history())
    ok = runner.invoke(main, ["ledger", "verify", "--batch-size", "4"])
    assert ok.exit_code == 0, ok.output
    assert "ledger ok: 6 rows verified" in ok.output
    with tampering(db) as connection:
        connection.execute(text("UPDATE ledger_entries SET account_id = 'evil' WHERE id = 5"))
    bad = runner.invoke(main, ["ledger", "verify"])
    assert bad.exit_code == 1
    assert "ledger entry 5 does not match its hash chain (4 rows before it verified)" in bad.output


def test_concurrent_writers_form_one_chain(db: Engine) -> None:
    skip_unless_postgres(db)
    factory = make_session_factory(db)
    writers, per_writer = 6, 5
    barrier = threading.Barrier(writers)
    failures: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            barrier.wait()
            for number in range(per_writer):
                step = Step(f"w{writer}", 1_000 * (number + 1), at(2026, 1, 1 + number))
                with transaction(factory) as session:
                    record(session, step, before=1_000 * number, key=f"w{writer}:{number}")
        except BaseException as exc:  # surfaced by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    report = verify(db, batch_size=7)
    assert report.ok and report.rows_checked == writers * per_writer
    with db.connect() as connection:  # and the rollup each write kept adds up to the entries
        assert rebuild_rollup(connection, keep=False).matched
