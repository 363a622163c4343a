"""The `upshift` console script: serve, migrate, keys, catalog and OpenAPI commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from service.settings import Settings

OPENAPI_PATH = Path("openapi/openapi.json")
SCHEMA_PATH = Path("pricing_catalog/catalog.schema.json")


@click.group()
def main() -> None:
    """Upshift: self-serve upgrades and pricing tiers."""


@main.command()
def migrate() -> None:
    """Bring the database (UPSHIFT_DATABASE_URL) up to the latest schema."""
    from service.adapters.db import make_engine
    from service.adapters.db import migrate as run_migrations

    settings = Settings()
    engine = make_engine(settings.database_url)
    run_migrations(engine)
    engine.dispose()
    click.echo("database is at the latest revision")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on")
@click.option("--demo/--no-demo", default=None, help="Seed the demo account and print a key")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    envvar="UPSHIFT_WORKERS",
    type=click.IntRange(1, 256),
    help="Worker processes (PostgreSQL only; env UPSHIFT_WORKERS)",
)
def serve(host: str, port: int, demo: bool | None, workers: int) -> None:
    """Run the service with uvicorn; migrates the embedded SQLite database first."""
    import os

    import uvicorn

    from service.adapters.db import make_engine
    from service.adapters.db import migrate as run_migrations
    from service.adapters.stripe_api import StripeNotConfigured
    from service.api.app import create_app
    from service.domain.catalog import CatalogError
    from service.settings import ServiceMisconfigured

    settings = Settings()
    if demo is not None:
        settings = settings.model_copy(update={"seed_demo": demo})
    if workers > 1 and settings.is_sqlite:
        # Offer caches stay coherent through PostgreSQL's notifications; SQLite has none.
        click.echo(
            "--workers above 1 needs PostgreSQL (UPSHIFT_DATABASE_URL=postgresql+psycopg://…): "
            "the embedded SQLite database serves one process",
            err=True,
        )
        sys.exit(2)
    busy = _port_taken(host, port)
    if busy:
        # Before anything is seeded or printed: a key shown for a service that never ran is a
        # key nobody meant to create.
        click.echo(f"cannot serve on {host}:{port}: {busy}", err=True)
        sys.exit(2)
    try:
        app = create_app(settings)  # also checks the catalog, Stripe and token settings
    except (CatalogError, StripeNotConfigured, ServiceMisconfigured) as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    if settings.is_sqlite:
        engine = make_engine(settings.database_url)
        run_migrations(engine)
        engine.dispose()
    if settings.seed_demo:
        from service.demo_history import seed_history
        from service.services.demo import seed_demo

        state = app.state
        # The history first: its movements are dated before the live demo account's.
        history = seed_history(settings, state.clock.now())
        click.echo(
            f"demo history: {history.accounts} accounts over the last year ({history.requests} "
            "requests through the API)"
            if history.seeded
            else "demo history: already seeded"
        )
        key = seed_demo(state.session_factory, state.catalog, state.clock)
        click.echo(f"demo account 'demo' ready; admin key (shown once): {key}")
    click.echo(
        f"Upshift on http://{host}:{port}  (try /v1/catalog, /readyz)"
        + (f"\ndemo: http://{host}:{port}/demo" if settings.seed_demo else "")
    )
    log_level = settings.log_level.lower()
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    # Each worker builds its own app from the same environment (the same token secret).
    app.state.engine.dispose()
    os.environ["UPSHIFT_SEED_DEMO"] = "true" if settings.seed_demo else "false"
    uvicorn.run(
        "service.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )


def _port_taken(host: str, port: int) -> str | None:
    """Why the service could not listen on host:port (in use, not permitted), else None."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


@main.group()
def catalog() -> None:
    """Catalog tools."""


@catalog.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
def catalog_validate(path: Path) -> None:
    """Validate a catalog file, or a directory of versions (each file, then the versions
    against each other); prints every problem with its file and path and exits non-zero."""
    from service.adapters.catalog_loader import catalog_files, load_catalog, load_catalogs
    from service.domain.catalog import CatalogError

    try:
        load_catalogs(path)
    except CatalogError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    for file in catalog_files(path):
        loaded = load_catalog(file)
        click.echo(
            f"{file.name}: ok (version {loaded.version}, {len(loaded.tiers)} tiers, "
            f"effective from {loaded.effective_from.isoformat()})"
        )


@catalog.command("schema")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=SCHEMA_PATH,
    show_default=True,
    help="Where to write the JSON Schema",
)
def catalog_schema(output: Path) -> None:
    """Regenerate catalog.schema.json from the catalog model."""
    from service.domain.catalog import catalog_json_schema

    output.write_text(json.dumps(catalog_json_schema(), indent=2, sort_keys=True) + "\n")
    click.echo(f"wrote {output}")


@main.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=OPENAPI_PATH,
    show_default=True,
    help="Where to write the OpenAPI document",
)
def openapi(output: Path) -> None:
    """Regenerate openapi/openapi.json from the app."""
    from service.api.openapi_doc import openapi_json

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(openapi_json())
    click.echo(f"wrote {output}")


def _register_area_commands() -> None:
    from service.commands import billing, keys, ledger, signals

    main.add_command(billing.billing)
    main.add_command(keys.keys)
    main.add_command(signals.signals)
    main.add_command(ledger.ledger)
    main.add_command(ledger.report)
    from service.commands import (
        catalog_diff,
        catalog_migrate,
        catalog_publish,
        stripe,
        stripe_sync,
        webhooks,
    )

    catalog.add_command(stripe_sync.sync_stripe)
    catalog.add_command(catalog_diff.catalog_diff)
    catalog.add_command(catalog_migrate.catalog_migrate)
    catalog.add_command(catalog_publish.catalog_publish)
    catalog.add_command(catalog_publish.catalog_withdraw)
    main.add_command(webhooks.webhooks)
    main.add_command(stripe.stripe)


_register_area_commands()

if __name__ == "__main__":
    main()
