"""`upshift keys …`: server API keys (create, list, revoke); only their hashes are stored."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy import Engine

from service.settings import Settings


@click.group()
def keys() -> None:
    """Server API keys."""


@contextmanager
def _migrated_engine(settings: Settings) -> Iterator[Engine]:
    """The database's engine, or a clear exit before anything is created or changed."""
    from service.adapters.db import is_migrated, make_engine, missing_database

    missing = missing_database(settings.database_url)
    if missing:
        click.echo(missing, err=True)
        sys.exit(2)
    engine = make_engine(settings.database_url)
    try:
        if not is_migrated(engine):
            click.echo(
                "the database is not at the latest schema: run `upshift migrate` first", err=True
            )
            sys.exit(2)
        yield engine
    finally:
        engine.dispose()


@keys.command("create")
@click.option("--scopes", required=True, help="Comma-separated: admin, ingest, finance")
@click.option("--name", default="cli", show_default=True, help="A label for the key")
def create(scopes: str, name: str) -> None:
    """Create a key and print it once; only its hash is stored."""
    from service.adapters.db import make_session_factory, transaction
    from service.domain.errors import DomainError
    from service.ports import clock_at
    from service.services.api_keys import create_key, parse_scopes

    try:
        parsed = parse_scopes(scopes.split(","))
    except DomainError as exc:
        raise click.BadParameter(exc.detail, param_hint="--scopes") from None
    settings = Settings()
    with (
        _migrated_engine(settings) as engine,
        transaction(make_session_factory(engine)) as session,
    ):
        raw_key = create_key(session, clock_at(settings.now), name, parsed)
    click.echo(raw_key)


@keys.command("list")
def list_() -> None:
    """Every key: id, name, the first characters of the key, scopes, created, revoked."""
    from service.adapters.db import make_session_factory, transaction
    from service.services.api_keys import list_keys

    with (
        _migrated_engine(Settings()) as engine,
        transaction(make_session_factory(engine)) as session,
    ):
        rows = list_keys(session)
        click.echo(f"{'id':<36}  {'name':<16} {'prefix':<12}  {'scopes':<22} created / revoked")
        for row in rows:
            revoked = row.revoked_at.isoformat() if row.revoked_at else "active"
            click.echo(
                f"{row.id:<36}  {row.name[:16]:<16} {row.prefix:<12}  "
                f"{','.join(row.scopes):<22} {row.created_at.isoformat()} / {revoked}"
            )


@keys.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by its id (`upshift keys list`); it stops working at once everywhere."""
    from service.adapters.db import make_session_factory, transaction
    from service.ports import clock_at
    from service.services.api_keys import revoke_key

    settings = Settings()
    with (
        _migrated_engine(settings) as engine,
        transaction(make_session_factory(engine)) as session,
    ):
        revoked = revoke_key(session, clock_at(settings.now), key_id)
    if not revoked:
        click.echo(f"no active key with id {key_id}", err=True)
        sys.exit(1)
    click.echo(f"revoked {key_id}")
