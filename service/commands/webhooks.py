"""`upshift webhooks …`: re-run stored Stripe events whose processing has not succeeded yet."""

from __future__ import annotations

import sys

import click

from service.commands.common import catalog_or_exit
from service.settings import Settings


@click.group()
def webhooks() -> None:
    """The Stripe webhook inbox."""


@webhooks.command("process")
@click.option(
    "--limit",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="The most stored events to process in this run",
)
def process(limit: int) -> None:
    """Process unhandled events, oldest first, each in its own transaction; exits 1 if any
    still fails (its error is kept on the event)."""
    from service.adapters.db import make_engine, make_session_factory
    from service.adapters.stripe_api import StripeNotConfigured, connect_stripe
    from service.ports import clock_at
    from service.services.webhooks import process_unhandled

    settings = Settings()
    if settings.billing_backend == "local":
        # Local billing receives no Stripe events: nothing to process, and no key to ask for.
        click.echo("billing_backend is local: there are no Stripe events to process")
        return
    catalog = catalog_or_exit(settings)
    try:
        billing = connect_stripe(settings, catalog)
    except StripeNotConfigured as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    engine = make_engine(settings.database_url)
    try:
        report = process_unhandled(
            make_session_factory(engine), billing, catalog, clock_at(settings.now), limit=limit
        )
    finally:
        engine.dispose()
    click.echo(
        f"processed {report.processed}, ignored {report.ignored}, still failing {report.failed}"
    )
    if report.failed:
        sys.exit(1)
