"""What the command groups share: the catalog a command runs with, or a clean exit."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from service.domain.catalog import Catalog, CatalogHistory
from service.settings import Settings


def served_catalogs(settings: Settings, path: Path | None = None) -> CatalogHistory:
    """The versions the service serves: the files at `path` (UPSHIFT_CATALOG_PATH) and those
    published into the database (`catalog publish`), which accounts may be priced at. A
    database that does not exist yet, is not migrated or is out of reach adds none (said on
    stderr when it is out of reach); an invalid version raises CatalogError."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.adapters.catalog_loader import load_catalogs
    from service.adapters.catalog_store import has_catalog_table
    from service.adapters.db import make_engine, make_session_factory, missing_database
    from service.adapters.db import transaction as unit_of_work
    from service.services.catalogs import served_history

    files = load_catalogs(path or settings.catalog_path)
    if missing_database(settings.database_url):
        return files
    engine = make_engine(settings.database_url)
    try:
        if not has_catalog_table(engine):
            return files
        with unit_of_work(make_session_factory(engine)) as session:
            return served_history(files, session)
    except SQLAlchemyError as exc:
        click.echo(
            f"published catalog versions not read ({database_reason(exc)}): files only", err=True
        )
        return files
    finally:
        engine.dispose()


def database_reason(exc: Exception) -> str:
    """A database error in one line: the driver's message (its first line), for a command's
    refusal."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def catalogs_or_exit(settings: Settings) -> CatalogHistory:
    """The catalog versions served (files at UPSHIFT_CATALOG_PATH and published ones); an
    invalid one prints every problem and exits 2."""
    from service.domain.catalog import CatalogError

    try:
        return served_catalogs(settings)
    except CatalogError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def catalog_or_exit(settings: Settings) -> Catalog:
    """The version in force (at UPSHIFT_NOW, else now) among those served, linked to the
    others (accounts are priced at their own); exits 2 on an invalid one."""
    from service.ports import clock_at

    return catalogs_or_exit(settings).in_force(clock_at(settings.now).now())
