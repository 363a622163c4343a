"""`upshift catalog diff`: what changed between two catalogs and its MRR impact on the live
accounts, as a table or as JSON (the shape is documented in docs/catalog.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from service.commands.common import database_reason
from service.domain.accounts import plan_to_json
from service.domain.catalog import Catalog
from service.domain.catalog_diff import Value
from service.domain.money import Money

if TYPE_CHECKING:
    from service.services.catalog_diff import CatalogDiff

SHOWN_STUCK = 50  # accounts listed on the terminal; --json lists every one


@click.command("diff")
@click.argument("old", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("new", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--database-url",
    default=None,
    help="Database whose accounts are projected (default: UPSHIFT_DATABASE_URL)",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables")
def catalog_diff(old: Path, new: Path, database_url: str | None, as_json: bool) -> None:
    """Compare catalog OLD with catalog NEW: every change (tiers, prices, seats, limits, paths,
    add-ons) and, for the live accounts (all taken to be on OLD), each tier's accounts and MRR
    before and after the move, and the accounts NEW cannot take as they are. Changes nothing.
    An invalid catalog is refused with its problems (exit 2)."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.adapters.catalog_loader import load_catalog
    from service.adapters.db import make_engine
    from service.domain.catalog import CatalogError
    from service.domain.money import CurrencyMismatchError
    from service.services.catalog_diff import diff_against_accounts
    from service.settings import Settings

    catalogs: list[Catalog] = []
    errors: list[str] = []
    for path in (old, new):
        try:
            catalogs.append(load_catalog(path))
        except CatalogError as exc:
            errors.append(str(exc))
    if errors:
        click.echo("\n".join(errors), err=True)
        sys.exit(2)
    url = database_url or Settings().database_url
    engine = make_engine(url)
    try:
        diff = diff_against_accounts(engine, *catalogs)
    except CurrencyMismatchError as exc:
        click.echo(f"cannot diff: {exc}", err=True)
        sys.exit(2)
    except SQLAlchemyError as exc:
        reason = database_reason(exc)
        click.echo(f"cannot read the accounts (is the database migrated?): {reason}", err=True)
        sys.exit(2)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(diff_json(diff), indent=2))
    else:
        for line in diff_lines(diff):
            click.echo(line)


def diff_json(diff: CatalogDiff) -> dict[str, Any]:
    """The documented JSON shape (docs/catalog.md, "catalog diff")."""
    impact = diff.impact
    return {
        "old": _catalog_json(diff.old),
        "new": _catalog_json(diff.new),
        "changes": [
            {
                "kind": change.kind.value,
                "path": change.path,
                "before": _value_json(change.before),
                "after": _value_json(change.after),
                "description": change.describe(),
            }
            for change in diff.changes
        ],
        "impact": {
            "accounts": impact.accounts,
            "distinct_plans": impact.distinct_plans,
            "mrr_before": impact.mrr_before.as_json(),
            "mrr_after": impact.mrr_after.as_json(),
            "mrr_change": impact.mrr_change.as_json(),
            "tiers": [
                {
                    "tier": tier.tier,
                    "accounts": tier.accounts,
                    "accounts_not_moved": tier.accounts_not_moved,
                    "mrr_before": tier.mrr_before.as_json(),
                    "mrr_after": tier.mrr_after.as_json(),
                    "mrr_change": tier.mrr_change.as_json(),
                }
                for tier in impact.tiers
            ],
            "accounts_not_moved": [
                {
                    "account_id": account.account_id,
                    "plan": plan_to_json(account.plan),
                    "problems": [
                        {"code": p.code, "problem": p.problem, "outcome": p.outcome}
                        for p in account.problems
                    ],
                }
                for account in impact.stuck
            ],
        },
    }


def _catalog_json(catalog: Catalog) -> dict[str, str]:
    return {
        "version": catalog.version,
        "effective_from": catalog.effective_from.isoformat(),
        "currency": catalog.currency,
    }


def _value_json(value: Value) -> object:
    return value.as_json() if isinstance(value, Money) else value


def diff_lines(diff: CatalogDiff) -> list[str]:
    """The terminal report: changes, then per-tier impact, then the accounts not moved."""
    impact = diff.impact
    currency = impact.currency
    lines = [
        f"catalog {diff.old.version} -> {diff.new.version} ({currency})",
        "",
        f"changes ({len(diff.changes)}):" if diff.changes else "no changes",
    ]
    lines += [f"  {change.describe()}" for change in diff.changes]
    lines += [
        "",
        f"impact on {impact.accounts} live accounts ({impact.distinct_plans} distinct plans), "
        f"all taken to be on {diff.old.version}; MRR in {currency}:",
    ]
    header = ("tier", "accounts", "not moved", "MRR before", "MRR after", "change")
    rows = [
        (
            t.tier,
            str(t.accounts),
            str(t.accounts_not_moved),
            _amount(t.mrr_before),
            _amount(t.mrr_after),
            _amount(t.mrr_change, signed=True),
        )
        for t in impact.tiers
    ]
    rows.append(
        (
            "total",
            str(impact.accounts),
            str(len(impact.stuck)),
            _amount(impact.mrr_before),
            _amount(impact.mrr_after),
            _amount(impact.mrr_change, signed=True),
        )
    )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells))
    if impact.stuck:
        lines += ["", f"accounts NEW cannot take as they are ({len(impact.stuck)}):"]
        for account in impact.stuck[:SHOWN_STUCK]:
            plan = account.plan
            for problem in account.problems:
                lines.append(
                    f"  {account.account_id}  {plan.tier}/{plan.interval.value}, "
                    f"{plan.seats} seats: {problem.problem}; {problem.outcome}"
                )
        if len(impact.stuck) > SHOWN_STUCK:
            lines.append(f"  … and {len(impact.stuck) - SHOWN_STUCK} more (--json lists them all)")
    return lines


def _amount(amount: Money, *, signed: bool = False) -> str:
    text = f"{amount.to_decimal():,f}"
    return f"+{text}" if signed and amount.minor > 0 else text
