"""The `upshift` console script: migrate, keys, catalog validate/schema, openapi."""

from __future__ import annotations

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
    assert "catalog.yaml: ok (version 2026-11-01.1, 4 tiers)" in result.output


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
    result = runner.invoke(main, ["serve", "--port", "1"])
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
