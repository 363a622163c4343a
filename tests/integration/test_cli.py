"""The `upshift` console script: migrate, keys, catalog validate/schema, openapi."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import Engine

from service.adapters.db import make_session_factory
from service.cli import main
from service.services.api_keys import authenticate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_catalog_validate_ok(runner: CliRunner) -> None:
    result = runner.invoke(
        main, ["catalog", "validate", str(REPO / "pricing_catalog/catalog.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert (
        "catalog.yaml: ok (version 2026-11-01.1, 4 tiers, effective from 2026-11-01"
        in result.output
    )


def test_catalog_validate_names_the_spot_and_fails(runner: CliRunner, tmp_path: Path) -> None:
    document = yaml.safe_load((REPO / "pricing_catalog/catalog.yaml").read_text())
    document["tiers"]["growth"]["upgrades"][0]["to"] = "enterprize"
    bad = tmp_path / "catalog.yaml"
    bad.write_text(yaml.safe_dump(document))
    result = runner.invoke(main, ["catalog", "validate", str(bad)])
    assert result.exit_code == 1
    assert "catalog.yaml: tiers.growth.upgrades[0].to: unknown tier 'enterprize'" in result.output


def test_missing_catalog_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["catalog", "validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "nope.yaml: (file): cannot read" in result.output


def test_service_refuses_to_start_on_a_bad_catalog(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "catalog.yaml"
    bad.write_text("version: x\n")
    monkeypatch.setenv("UPSHIFT_CATALOG_PATH", str(bad))
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    result = runner.invoke(main, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert "catalog.yaml: effective_from: Field required" in result.output


def test_keys_create_prints_once_and_stores_a_hash(
    runner: CliRunner, db: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", database_url)
    result = runner.invoke(main, ["keys", "create", "--scopes", "admin,finance", "--name", "ops"])
    assert result.exit_code == 0, result.output
    raw_key = result.output.strip()
    assert raw_key.startswith("upk_")
    with make_session_factory(db)() as session:
        principal = authenticate(session, raw_key)
        assert principal is not None
        assert {s.value for s in principal.scopes} == {"admin", "finance"}
        stored = session.execute(__import__("sqlalchemy").text("SELECT key_hash FROM api_keys"))
        assert raw_key not in {row[0] for row in stored}


def test_keys_create_rejects_unknown_scope(runner: CliRunner) -> None:
    result = runner.invoke(main, ["keys", "create", "--scopes", "root"])
    assert result.exit_code == 2
    assert "scopes must be among" in result.output


def test_migrate_creates_a_fresh_sqlite_database(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", f"sqlite:///{tmp_path / 'var' / 'fresh.db'}")
    result = runner.invoke(main, ["migrate"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "var" / "fresh.db").exists()
    assert runner.invoke(main, ["migrate"]).exit_code == 0  # idempotent


def test_keys_are_listed_and_revoked(
    runner: CliRunner, db: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", database_url)
    raw_key = runner.invoke(main, ["keys", "create", "--scopes", "ingest", "--name", "etl"])
    raw_key = raw_key.output.strip()
    listed = runner.invoke(main, ["keys", "list"])
    assert listed.exit_code == 0, listed.output
    [line] = [row for row in listed.output.splitlines() if " etl " in row]
    assert raw_key[:12] in line and "ingest" in line and line.endswith("/ active")
    assert raw_key not in listed.output  # the key itself is never shown again
    key_id = line.split()[0]
    revoked = runner.invoke(main, ["keys", "revoke", key_id])
    assert revoked.exit_code == 0 and f"revoked {key_id}" in revoked.output
    with make_session_factory(db)() as session:
        assert authenticate(session, raw_key) is None
    again = runner.invoke(main, ["keys", "revoke", key_id])
    assert again.exit_code == 1 and "no active key" in again.output


def test_keys_outside_the_service_directory_say_what_to_do_and_create_nothing(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not the repository root: ./var/upshift.db does not exist
    monkeypatch.delenv("UPSHIFT_DATABASE_URL", raising=False)
    result = runner.invoke(main, ["keys", "create", "--scopes", "admin"])
    assert result.exit_code == 2
    assert "no database at" in result.output and "upshift migrate" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "var").exists()
    # A database that exists but was never migrated: told to migrate, nothing written.
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", f"sqlite:///{empty}")
    unmigrated = runner.invoke(main, ["keys", "list"])
    assert unmigrated.exit_code == 2 and "run `upshift migrate` first" in unmigrated.output


def test_serve_on_a_busy_port_fails_before_seeding_or_printing_a_key(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", f"sqlite:///{tmp_path / 'demo.db'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(main, ["serve", "--demo", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot serve on 127.0.0.1:{port}" in result.output
    assert "upk_" not in result.output and not (tmp_path / "demo.db").exists()


def test_webhooks_process_under_local_billing_asks_for_no_stripe_key(
    runner: CliRunner, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSHIFT_DATABASE_URL", database_url)
    monkeypatch.delenv("UPSHIFT_STRIPE_SECRET_KEY", raising=False)
    result = runner.invoke(main, ["webhooks", "process"])
    assert result.exit_code == 0, result.output
    assert "no Stripe events to process" in result.output
