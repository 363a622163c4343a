"""What the command groups share: the catalog a command runs with, or a clean exit."""

from __future__ import annotations

import sys

import click

from service.domain.catalog import Catalog
from service.settings import Settings


def catalog_or_exit(settings: Settings) -> Catalog:
    """The catalog at UPSHIFT_CATALOG_PATH; an invalid one prints every problem and exits 2."""
    from service.adapters.catalog_loader import load_catalog
    from service.domain.catalog import CatalogError

    try:
        return load_catalog(settings.catalog_path)
    except CatalogError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
