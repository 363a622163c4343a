"""`upshift catalog sync-stripe`: create or update Stripe's products and prices from the catalog."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from service.settings import Settings


@click.command("sync-stripe")
@click.option("--apply", "apply_changes", is_flag=True, help="Make the changes (default: dry run)")
@click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Catalog directory of versions, or one file (default: UPSHIFT_CATALOG_PATH)",
)
def sync_stripe(apply_changes: bool, catalog_path: Path | None) -> None:
    """Bring Stripe (UPSHIFT_STRIPE_SECRET_KEY) to the catalog: one product per tier and add-on,
    one price per lookup key of every catalog version (lookup keys carry the version where an
    amount changed), the versions published into the database included. Prints the plan;
    changes nothing without --apply."""
    from service.adapters.stripe_api import StripeNotConfigured, stripe_client
    from service.adapters.stripe_setup import StripeCatalogStore
    from service.commands.common import served_catalogs
    from service.domain.catalog import CatalogError
    from service.domain.errors import DomainError
    from service.services.stripe_sync import sync_stripe as run_sync

    settings = Settings()
    try:
        catalog = served_catalogs(settings, catalog_path).latest
        store = StripeCatalogStore(stripe_client(settings))
        plan = run_sync(store, catalog, apply=apply_changes)
    except (CatalogError, StripeNotConfigured) as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    except DomainError as exc:
        click.echo(f"Stripe: {exc.detail}", err=True)
        sys.exit(1)
    mode = "applied" if apply_changes else "dry run"
    changes = f"{len(plan.actions)} change{'' if len(plan.actions) == 1 else 's'}"
    versions = ", ".join(catalog.history.names)
    click.echo(f"Stripe catalog sync for catalog versions {versions} ({mode}):")
    for line in plan.describe():
        click.echo(f"  {line}")
    in_sync = f"{plan.products_in_sync} products and {plan.prices_in_sync} prices already match"
    if plan.empty:
        click.echo(f"nothing to do: {in_sync}")
    elif apply_changes:
        click.echo(f"made {changes}; {in_sync}")
    else:
        click.echo(f"{changes} planned; {in_sync}. --apply makes them.")
