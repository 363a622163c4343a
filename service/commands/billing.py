"""`upshift billing …`: local billing's renewals from a cron-style job (the service's own worker
does the same in every replica)."""

from __future__ import annotations

import sys
import time

import click

from service.commands.common import catalog_or_exit
from service.settings import Settings


@click.group()
def billing() -> None:
    """Local billing."""


@billing.command("run")
@click.option("--once", is_flag=True, help="Renew what is due now, then exit")
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Pause between rounds without --once  [default: UPSHIFT_RENEWAL_POLL_S, 5]",
)
def run(once: bool, poll_seconds: float | None) -> None:
    """Renew every account whose period has ended: invoice the new period, apply scheduled
    changes, book the MRR movement at the boundary. Safe beside the service's workers and other
    runs of this command: each account is renewed once."""
    from service.adapters.db import make_engine, make_session_factory
    from service.ports import clock_at
    from service.services.billing import local_gateways
    from service.services.renewals import RenewalRound, due_count, renew_due_accounts

    settings = Settings()
    if settings.billing_backend != "local":
        click.echo("billing_backend is stripe: Stripe renews subscriptions itself", err=True)
        sys.exit(2)
    catalog = catalog_or_exit(settings)
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    gateways = local_gateways(set(settings.local_decline_accounts))
    clock = clock_at(settings.now)
    try:
        while True:
            now = clock.now()
            with click.progressbar(
                length=due_count(factory, now), label="due accounts", file=sys.stderr
            ) as bar:

                def advance(batch: RenewalRound) -> None:
                    bar.update(batch.accounts + batch.failed)

                done = renew_due_accounts(factory, catalog, gateways, now, on_batch=advance)
            click.echo(
                f"renewed {done.accounts} accounts ({done.renewals} periods invoiced); "
                f"{done.failed} failed"
            )
            if once:
                sys.exit(1 if done.failed else 0)
            time.sleep(poll_seconds or settings.renewal_poll_s)
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()
