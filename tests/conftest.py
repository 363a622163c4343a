"""Shared fixtures: a real database (SQLite, or PostgreSQL via UPSHIFT_TEST_DATABASE_URL) built
by the migrations, emptied between tests, and the app over HTTP with a controllable clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, make_url, text

from service.adapters.db import make_engine, make_session_factory, migrate, transaction
from service.adapters.schema import metadata
from service.api.app import create_app
from service.services.api_keys import Scope, create_key
from service.settings import Settings
from tests.fakes.clock import FakeClock

REPO_ROOT = Path(__file__).resolve().parents[1]
CATALOG_PATH = REPO_ROOT / "pricing_catalog" / "catalog.yaml"
PG_URL = os.environ.get("UPSHIFT_TEST_DATABASE_URL")


def _postgres_database(base_url: str) -> Iterator[str]:
    """A fresh database per test run, dropped afterwards, so runs never see each other's rows."""
    url = make_url(base_url)
    if url.drivername in {"postgresql", "postgres"}:
        url = url.set(drivername="postgresql+psycopg")
    name = f"upshift_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PG_URL:
        yield from _postgres_database(PG_URL)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'upshift.db'}"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    built = make_engine(database_url)
    migrate(built)
    yield built
    built.dispose()


def _empty_tables(engine: Engine) -> None:
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def db(engine: Engine) -> Iterator[Engine]:
    """The migrated database, empty at the start of the test."""
    _empty_tables(engine)
    yield engine


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        catalog_path=CATALOG_PATH,
        token_secret=SecretStr("test-token-secret"),
    )


@pytest.fixture
def app(db: Engine, settings: Settings, clock: FakeClock) -> FastAPI:
    return create_app(settings, clock=clock, engine=db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _key(engine: Engine, clock: FakeClock, *scopes: Scope) -> str:
    with transaction(make_session_factory(engine)) as session:
        return create_key(session, clock, "test", frozenset(scopes))


@pytest.fixture
def admin_headers(db: Engine, clock: FakeClock) -> dict[str, str]:
    return {"Authorization": f"Bearer {_key(db, clock, Scope.admin)}"}


@pytest.fixture
def ingest_headers(db: Engine, clock: FakeClock) -> dict[str, str]:
    return {"Authorization": f"Bearer {_key(db, clock, Scope.ingest)}"}


@pytest.fixture
def finance_headers(db: Engine, clock: FakeClock) -> dict[str, str]:
    return {"Authorization": f"Bearer {_key(db, clock, Scope.finance)}"}


# The Stripe-mode fixtures, for every test module (pytest_plugins would have to live in a
# rootdir conftest). Imported last: that module reads CATALOG_PATH from this one.
from tests.stripe_fixtures_app import (  # noqa: E402, F401
    fake_stripe,
    fake_stripe_server,
    stripe_app,
    stripe_http,
    stripe_settings,
    world,
)
