"""Alembic environment: runs on the connection the service hands in, or on UPSHIFT_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from service.adapters.db import make_engine
from service.adapters.schema import metadata
from service.settings import Settings

target_metadata = metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = make_engine(Settings().database_url)
    with engine.begin() as fresh:
        run_on(fresh)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
main()
