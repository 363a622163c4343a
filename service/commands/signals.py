"""`upshift signals …`: deliver the signal outbox and re-evaluate every account's thresholds."""

from __future__ import annotations

import sys

import click

from service.commands.common import catalog_or_exit
from service.settings import Settings


@click.group()
def signals() -> None:
    """Expansion signals."""


@signals.command("sweep")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    help="Accounts per transaction  [default: the service's page, 10,000]",
)
def sweep(batch_size: int | None) -> None:
    """Re-evaluate every account's thresholds (after a catalog change, say); idempotent."""
    from service.adapters.db import make_engine, make_session_factory
    from service.ports import clock_at
    from service.services.signals import SWEEP_PAGE, SweepPage, account_count
    from service.services.signals import sweep as run_sweep

    settings = Settings()
    catalog = catalog_or_exit(settings)
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    try:
        total = account_count(factory)
        with click.progressbar(length=total, label="accounts", file=sys.stderr) as bar:

            def advance(page: SweepPage) -> None:
                bar.update(page.accounts)

            report = run_sweep(
                factory,
                catalog,
                clock_at(settings.now).now(),
                batch_size=batch_size or SWEEP_PAGE,
                on_page=advance,
            )
    finally:
        engine.dispose()
    click.echo(f"swept {report.accounts} accounts; {report.crossings} new crossings recorded")


@signals.command("deliver")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit")
def deliver(once: bool) -> None:
    """Deliver the signal outbox to UPSHIFT_SIGNAL_WEBHOOK_URLS (signed, retried, logged)."""
    import time

    import httpx

    from service.adapters.db import make_engine, make_session_factory
    from service.ports import clock_at
    from service.services.outbox import DeliveryConfig, deliver_due

    settings = Settings()
    try:
        config = DeliveryConfig.from_settings(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if config is None:
        raise click.UsageError("set UPSHIFT_SIGNAL_WEBHOOK_URLS (a JSON list of URLs)")
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    clock = clock_at(settings.now)
    try:
        with httpx.Client() as client:
            while True:
                report = deliver_due(factory, config, clock, client)
                if report.attempted or once:
                    click.echo(
                        f"fanned out {report.fanned_out}, attempted {report.attempted}, "
                        f"delivered {report.delivered}, failed {report.failed}"
                    )
                if once:
                    break
                time.sleep(config.poll_s)
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()
