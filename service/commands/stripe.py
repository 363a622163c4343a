"""`upshift stripe …`: set Stripe up for Upshift (its webhook endpoint, in our API version)."""

from __future__ import annotations

import sys

import click

from service.settings import Settings


@click.group()
def stripe() -> None:
    """Stripe set-up."""


@stripe.group("webhook-endpoint")
def webhook_endpoint() -> None:
    """The endpoint Stripe sends events to."""


@webhook_endpoint.command("create")
@click.argument("url")
def create(url: str) -> None:
    """Create the webhook endpoint at URL (https://…/v1/webhooks/stripe) with the API version
    Upshift reads and the events it handles; prints its signing secret, for
    UPSHIFT_STRIPE_WEBHOOK_SECRET. An endpoint already at URL is left as it is."""
    from service.adapters.stripe_api import StripeNotConfigured, stripe_client
    from service.domain.errors import DomainError
    from service.services.stripe_sync import EndpointExists, ensure_webhook_endpoint
    from service.services.webhooks import SYNCED_EVENTS

    try:
        created = ensure_webhook_endpoint(stripe_client(Settings()), url, sorted(SYNCED_EVENTS))
    except StripeNotConfigured as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    except EndpointExists as exc:
        click.echo(exc.detail, err=not exc.fits)
        sys.exit(0 if exc.fits else 1)
    except DomainError as exc:
        click.echo(f"Stripe: {exc.detail}", err=True)
        sys.exit(1)
    click.echo(
        f"created {created.id} for {created.url}: API version {created.api_version}, "
        f"{len(created.events)} events"
    )
    click.echo(f"signing secret (set UPSHIFT_STRIPE_WEBHOOK_SECRET to it): {created.secret}")
