"""What the command groups share: the catalog a command runs with, or a clean exit."""

from __future__ import annotations

import sys

import click

from service.domain.catalog import Catalog, CatalogHistory
from service.settings import Settings


def catalogs_or_exit(settings: Settings) -> CatalogHistory:
    """The catalog versions at UPSHIFT_CATALOG_PATH; an invalid one prints every problem and
    exits 2."""
    from service.adapters.catalog_loader import load_catalogs
    from service.domain.catalog import CatalogError

    try:
        return load_catalogs(settings.catalog_path)
    except CatalogError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def catalog_or_exit(settings: Settings) -> Catalog:
    """The version in force (at UPSHIFT_NOW, else now) among those at UPSHIFT_CATALOG_PATH,
    linked to the others (accounts are priced at their own); exits 2 on an invalid one."""
    from service.ports import clock_at

    return catalogs_or_exit(settings).in_force(clock_at(settings.now).now())
