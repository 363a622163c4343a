"""`upshift catalog migrate`: move accounts to another catalog version (dry run by default), as a
table or as JSON (the shape is documented in docs/catalog.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from service.commands.common import catalogs_or_exit, database_reason
from service.domain.accounts import plan_to_json
from service.domain.money import Money
from service.settings import Settings

if TYPE_CHECKING:
    from service.domain.catalog import CatalogHistory
    from service.services.catalog_migrate import MigrationReport, MigrationRequest

SHOWN_NOT_MOVED = 50  # accounts listed on the terminal; --json lists every one


@click.command("migrate")
@click.option("--to", "to_version", required=True, help="The catalog version to move accounts to")
@click.option("--tier", default=None, help="Only accounts on this tier")
@click.option(
    "--accounts",
    "accounts_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Only the accounts in FILE (one id a line; blank lines and # comments ignored)",
)
@click.option(
    "--when",
    type=click.Choice(["immediate", "end_of_term"]),
    default=None,
    help="immediate: now, prorated like any change; end_of_term: at each account's period end, "
    "scheduled like a downgrade  [required unless --limits-only]",
)
@click.option(
    "--limits-only",
    is_flag=True,
    help="Move only the accounts' limits and entitlements to the version; prices untouched",
)
@click.option("--apply", is_flag=True, help="Move the accounts (default: a dry run)")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=1_000,
    show_default=True,
    help="Accounts per transaction",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables")
def catalog_migrate(
    to_version: str,
    tier: str | None,
    accounts_file: Path | None,
    when: str | None,
    limits_only: bool,
    apply: bool,
    batch_size: int,
    as_json: bool,
) -> None:
    """Move live accounts to catalog version TO (one the service serves: the files at
    UPSHIFT_CATALOG_PATH and the versions published with `catalog publish`).

    A dry run (the default) changes nothing and shows what --apply would do: per tier the
    accounts moved and not moved, their MRR before and after and what is invoiced now, and
    every account the version cannot take, with why. --apply moves them a batch per
    transaction: resumable (run it again after a stop) and idempotent (an account already on
    TO, or scheduled to it, is skipped). Each moved account gets one ledger movement with the
    engine price_uplift. --limits-only moves limits and entitlements alone: no price change,
    no invoice, no ledger entry.
    """
    from service.adapters.db import make_engine, make_session_factory
    from service.domain.catalog import Timing, UnknownCatalogVersion
    from service.services.catalog_migrate import MigrationRequest

    if when is None and not limits_only:
        raise click.UsageError("--when immediate|end_of_term is required (or --limits-only)")
    if when is not None and limits_only:
        raise click.UsageError("--limits-only moves no price, so it takes no --when")
    settings = Settings()
    history = catalogs_or_exit(settings)
    try:
        history.version(to_version)
    except UnknownCatalogVersion as exc:
        click.echo(f"cannot migrate: {exc}", err=True)
        sys.exit(2)
    if tier is not None and tier not in {k for c in history.versions for k in c.tiers}:
        click.echo(f"cannot migrate: no catalog version has a tier '{tier}'", err=True)
        sys.exit(2)
    request = MigrationRequest(
        to_version=to_version,
        when=Timing(when or "immediate"),
        tier=tier,
        account_ids=_read_ids(accounts_file) if accounts_file else None,
        limits_only=limits_only,
    )
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    try:
        report = _run(factory, history, request, settings, apply, batch_size)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(migration_json(report, history), indent=2))
    else:
        for line in migration_lines(report, history):
            click.echo(line)


def _run(
    factory: Any,
    history: CatalogHistory,
    request: MigrationRequest,
    settings: Settings,
    apply: bool,
    batch_size: int,
) -> MigrationReport:
    """The migration with a progress bar; a refusal or a database error exits 2 in one line
    (batches committed before it stand: the same command resumes)."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.adapters.stripe_api import StripeNotConfigured
    from service.domain.errors import DomainError
    from service.ports import clock_at
    from service.services.catalog_migrate import migrate_accounts, migration_scope

    try:
        provider_move = _stripe_move(factory, history, settings) if apply else None
    except StripeNotConfigured as exc:
        click.echo(f"cannot migrate: {exc}", err=True)
        sys.exit(2)
    try:
        scope = migration_scope(factory, request)
        with click.progressbar(
            length=len(scope.account_ids), label="accounts", file=sys.stderr
        ) as bar:
            report = migrate_accounts(
                factory,
                history,
                request,
                clock_at(settings.now).now(),
                apply=apply,
                billing_backend=settings.billing_backend,
                declining_accounts=settings.local_decline_accounts,
                batch_size=batch_size,
                on_batch=bar.update,
                scope=scope,
                provider_move=provider_move,
            )
    except DomainError as exc:
        click.echo(f"cannot migrate: {exc.detail} (batches already committed stand)", err=True)
        sys.exit(2)
    except SQLAlchemyError as exc:
        reason = database_reason(exc)
        click.echo(f"cannot migrate (is the database migrated?): {reason}", err=True)
        sys.exit(2)
    return report


def _stripe_move(factory: Any, history: CatalogHistory, settings: Settings) -> Any:
    """With UPSHIFT_BILLING_BACKEND=stripe: each account moves through its subscription, as
    the upgrade endpoint changes it (services.upgrades.execute_upgrade), with the Stripe
    client the service itself builds; None with local billing."""
    if settings.billing_backend != "stripe":
        return None
    import secrets

    from service.adapters.billing_stripe import StripeBillingGateway
    from service.adapters.db import transaction
    from service.adapters.stripe_api import connect_stripe
    from service.ports import clock_at
    from service.services.quotes import TargetChange
    from service.services.tokens import TokenSigner
    from service.services.upgrades import UpgradeOutcome, UpgradeRequest, execute_upgrade

    clock = clock_at(settings.now)
    catalog = history.in_force(clock.now())
    stripe_billing = connect_stripe(settings, catalog)
    signer = TokenSigner(secrets.token_urlsafe(32))  # no offer tokens: explicit targets only

    def move(account_id: str, change: TargetChange, key: str) -> UpgradeOutcome:
        return execute_upgrade(
            lambda: transaction(factory),
            catalog,
            clock.now(),
            signer,
            lambda _session: StripeBillingGateway(stripe_billing),
            UpgradeRequest(
                account_id=account_id,
                idempotency_key=key,
                offer_token=None,
                target=change,
                expected_amount_due=None,
                body={"catalog_migrate": change.version, "at_term_end": change.at_term_end},
            ),
        )

    return move


def _read_ids(path: Path) -> frozenset[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return frozenset(line for line in lines if line)


def migration_json(report: MigrationReport, history: CatalogHistory) -> dict[str, Any]:
    """The documented JSON shape (docs/catalog.md, "catalog migrate")."""
    request = report.request
    target = report.target
    return {
        "to": {
            "version": target.version,
            "effective_from": target.effective_from.isoformat(),
            "currency": target.currency,
        },
        "when": None if request.limits_only else request.when.value,
        "limits_only": request.limits_only,
        "applied": report.applied,
        "accounts": {
            "considered": report.considered,
            "already_on_target": report.already,
            "moved": report.moved,
            "scheduled": report.scheduled,
            "not_moved": len(report.not_moved),
            "billed_by_stripe": report.stripe_billed,
        },
        "mrr_before": report.mrr_before.as_json(),
        "mrr_after": report.mrr_after.as_json(),
        "mrr_change": report.mrr_change.as_json(),
        "amount_due": report.amount_due.as_json(),
        "ledger_entries": report.ledger_entries if report.applied else None,
        "tiers": [
            {
                "tier": tally.tier,
                "moved": tally.moved,
                "scheduled": tally.scheduled,
                "not_moved": tally.not_moved,
                "mrr_before": tally.mrr_before.as_json(),
                "mrr_after": tally.mrr_after.as_json(),
                "mrr_change": tally.mrr_change.as_json(),
                "amount_due": tally.amount_due.as_json(),
            }
            for tally in report.tier_rows()
        ],
        "changes": {
            version: [change.describe() for change in changes]
            for version, changes in report.changes(history).items()
        },
        "accounts_not_moved": [
            {
                "account_id": move.account_id,
                "from_version": move.from_version,
                "plan": plan_to_json(move.plan) if move.plan else None,
                "problems": [
                    {"code": p.code, "problem": p.problem, "outcome": p.outcome}
                    for p in move.problems
                ],
            }
            for move in report.not_moved
        ],
    }


def migration_lines(report: MigrationReport, history: CatalogHistory) -> list[str]:
    """The terminal report: what moves, per tier, then the accounts not moved."""
    request = report.request
    target = report.target
    currency = target.currency
    what = "limits and entitlements only" if request.limits_only else request.when.value
    head = "applied" if report.applied else "dry run (nothing changed; --apply moves them)"
    lines = [f"catalog migrate to {target.version} ({what}): {head}"]
    if request.limits_only:
        lines.append("  prices untouched: no invoice, no ledger entry; limits_version moves")
    lines.append(
        f"  {report.considered} accounts in scope: {report.already} already on "
        f"{target.version}, {report.moved} moved, {report.scheduled} scheduled for their "
        f"period end, {len(report.not_moved)} not moved"
    )
    if report.stripe_billed:
        lines.append(
            f"  {report.stripe_billed} of them are billed by Stripe: --apply refuses them "
            "(this command moves locally billed accounts)"
        )
    for version, changes in report.changes(history).items():
        lines += ["", f"changes from {version} ({len(changes)}):"]
        lines += [f"  {change.describe()}" for change in changes] or ["  none"]
    lines += ["", f"MRR in {currency} of the accounts that move; due: invoiced now (immediate):"]
    header = ("tier", "moved", "scheduled", "not moved", "MRR before", "MRR after", "change", "due")
    rows = [
        (
            t.tier,
            str(t.moved),
            str(t.scheduled),
            str(t.not_moved),
            _amount(t.mrr_before),
            _amount(t.mrr_after),
            _amount(t.mrr_change, signed=True),
            _amount(t.amount_due),
        )
        for t in report.tier_rows()
    ]
    rows.append(
        (
            "total",
            str(report.moved),
            str(report.scheduled),
            str(len(report.not_moved)),
            _amount(report.mrr_before),
            _amount(report.mrr_after),
            _amount(report.mrr_change, signed=True),
            _amount(report.amount_due),
        )
    )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells))
    if report.applied and not request.limits_only:
        lines.append(f"  ledger entries written: {report.ledger_entries} (engine price_uplift)")
    if report.not_moved:
        lines += ["", f"accounts not moved ({len(report.not_moved)}):"]
        for move in report.not_moved[:SHOWN_NOT_MOVED]:
            for problem in move.problems:
                lines.append(f"  {move.account_id}: {problem.problem}; {problem.outcome}")
        if len(report.not_moved) > SHOWN_NOT_MOVED:
            more = len(report.not_moved) - SHOWN_NOT_MOVED
            lines.append(f"  … and {more} more (--json lists them all)")
    return lines


def _amount(amount: Money, *, signed: bool = False) -> str:
    text = f"{amount.to_decimal():,f}"
    return f"+{text}" if signed and amount.minor > 0 else text
