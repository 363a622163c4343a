"""`upshift catalog publish`: a new catalog version reaches every running replica without a
restart (stored in the database, replicas notified), checked first as `catalog validate` checks;
`upshift catalog withdraw` takes one back before anything is priced at it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from service.commands.common import database_reason


@click.command("publish")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--database-url",
    default=None,
    help="Database the replicas serve from (default: UPSHIFT_DATABASE_URL)",
)
@click.option(
    "--force",
    is_flag=True,
    help="Publish even though effective_from is closer than the propagation window (replicas "
    "may then switch up to a poll apart); a past effective_from is refused all the same",
)
def catalog_publish(file: Path, database_url: str | None, force: bool) -> None:
    """Publish catalog FILE as a new version to every replica, without a restart.

    FILE is validated as `catalog validate` does, then against every version served (the files
    at UPSHIFT_CATALOG_PATH and the versions published before); any problem is printed with
    its file and spot, exit 1, nothing stored. A valid version is stored in one transaction and
    the replicas are notified; each serves it to new business from its effective_from, which
    must be at least the propagation window ahead (three polls of UPSHIFT_CATALOG_POLL_S, at
    least a minute). Publishing the same document again changes nothing; another document
    under a published version is refused (versions are immutable)."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.adapters.catalog_loader import load_catalog, load_catalogs
    from service.adapters.db import is_migrated, make_engine, make_session_factory, missing_database
    from service.domain.catalog import CatalogError
    from service.ports import clock_at
    from service.services.catalog_publishing import PublishRefused, publish_catalog, publish_lead
    from service.settings import Settings

    settings = Settings()
    try:
        catalog = load_catalog(file)
        files = load_catalogs(settings.catalog_path)
    except CatalogError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    url = database_url or settings.database_url
    missing = missing_database(url)
    if missing:
        click.echo(missing, err=True)
        sys.exit(2)
    engine = make_engine(url)
    lead = publish_lead(settings.catalog_poll_s)
    try:
        if not is_migrated(engine):
            click.echo("the database is not at the latest schema: run `upshift migrate`", err=True)
            sys.exit(2)
        publication = publish_catalog(
            make_session_factory(engine),
            files,
            catalog,
            file.name,
            clock_at(settings.now).now(),
            lead=lead,
            force=force,
        )
    except CatalogError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except PublishRefused as exc:
        click.echo(f"{file.name}: not published: {exc}", err=True)
        sys.exit(1)
    except SQLAlchemyError as exc:
        reason = database_reason(exc)
        click.echo(f"cannot publish: {reason}", err=True)
        sys.exit(2)
    finally:
        engine.dispose()
    if publication.warning:
        click.echo(publication.warning, err=True)
    version = catalog.version
    if not publication.stored:
        click.echo(
            f"{file.name}: version {version} is published already, with this very "
            "document; nothing changed"
        )
        return
    click.echo(
        f"{file.name}: published version {version} (sha256 {publication.sha256[:12]}); new "
        f"business gets it from {catalog.effective_from.isoformat()} on every replica, which "
        f"loads it at once when notified (PostgreSQL) or within {settings.catalog_poll_s:g} s"
    )


@click.command("withdraw")
@click.argument("version")
@click.option(
    "--database-url",
    default=None,
    help="Database the replicas serve from (default: UPSHIFT_DATABASE_URL)",
)
def catalog_withdraw(version: str, database_url: str | None) -> None:
    """Withdraw published catalog VERSION before anything is priced at it: every replica stops
    serving it (notified, as for a publication). Refused (exit 1) when it takes effect within
    the propagation window or already, or when an account or ledger entry names it. Its name
    stays taken: a correction is published under a new version."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.adapters.db import (
        is_migrated,
        make_engine,
        make_session_factory,
        missing_database,
    )
    from service.ports import clock_at
    from service.services.catalog_publishing import PublishRefused, publish_lead, withdraw_catalog
    from service.settings import Settings

    settings = Settings()
    url = database_url or settings.database_url
    missing = missing_database(url)
    if missing:
        click.echo(missing, err=True)
        sys.exit(2)
    engine = make_engine(url)
    now = clock_at(settings.now).now()
    try:
        if not is_migrated(engine):
            click.echo("the database is not at the latest schema: run `upshift migrate`", err=True)
            sys.exit(2)
        withdrawal = withdraw_catalog(
            make_session_factory(engine), version, now, lead=publish_lead(settings.catalog_poll_s)
        )
    except PublishRefused as exc:
        click.echo(f"not withdrawn: {exc}", err=True)
        sys.exit(1)
    except SQLAlchemyError as exc:
        reason = database_reason(exc)
        click.echo(f"cannot withdraw: {reason}", err=True)
        sys.exit(2)
    finally:
        engine.dispose()
    row = withdrawal.row
    assert row.withdrawn_at is not None
    if not withdrawal.withdrawn:
        click.echo(f"version {version} was withdrawn already, on {row.withdrawn_at.isoformat()}")
        return
    click.echo(
        f"withdrew version {version} (it was to take effect at {row.effective_from.isoformat()}); "
        "replicas stop serving it when notified (PostgreSQL) or within "
        f"{settings.catalog_poll_s:g} s"
    )
