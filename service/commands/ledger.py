"""`upshift ledger …` and `upshift report …`: verify and export the ledger, report NRR / GRR."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from service.settings import Settings


def _moment(_context: click.Context, parameter: click.Parameter, value: str | None) -> Any:
    """An ISO-8601 instant with an offset, or a plain date meaning UTC midnight."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 date or instant: {value!r}") from None
    if moment.tzinfo is None:
        raise click.BadParameter("give an offset (e.g. 2026-01-01T00:00:00Z); times are UTC")
    return moment.astimezone(UTC)


@contextmanager
def _engine() -> Iterator[Any]:
    """The configured database's engine, disposed of when the command is done."""
    from service.adapters.db import make_engine

    engine = make_engine(Settings().database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@click.group()
def ledger() -> None:
    """The expansion ledger."""


@ledger.command("verify")
@click.option(
    "--batch-size",
    default=5_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows read per batch",
)
def verify(batch_size: int) -> None:
    """Recompute the hash chain; name the first row that does not match and exit 1."""
    from service.services.ledger_entries import verify_ledger

    with _engine() as engine, engine.connect() as connection:
        result = verify_ledger(connection, batch_size=batch_size)
    if not result.ok:
        click.echo(
            f"ledger entry {result.first_bad_id} does not match its hash chain "
            f"({result.rows_checked} rows before it verified)",
            err=True,
        )
        sys.exit(1)
    click.echo(f"ledger ok: {result.rows_checked} rows verified, head {result.head_hash or '-'}")


@ledger.command("rollup")
@click.option("--rebuild", is_flag=True, help="Replace the rollup with the recomputed one")
def rollup(rebuild: bool) -> None:
    """Recompute the monthly rollup the NRR report reads and compare it with the kept one;
    exit 1 if they differ (unless --rebuild, which keeps the recomputed one)."""
    from service.services.ledger_entries import rebuild_rollup

    with _engine() as engine, engine.connect() as connection:
        result = rebuild_rollup(connection, keep=rebuild)
    state = "matched" if result.matched else "differed from"
    click.echo(f"ledger rollup {state} the entries ({result.rows} rows)")
    if rebuild:
        click.echo("ledger rollup rebuilt")
    elif not result.matched:
        sys.exit(1)


@ledger.command("export")
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["csv", "jsonl", "parquet"]),
    default="csv",
    help="csv and jsonl as the API exports them; parquet needs pyarrow",
    show_default=True,
)
@click.option(
    "--dataset",
    type=click.Choice(["movements", "credit"]),
    default="movements",
    show_default=True,
    help="movements: MRR movements; credit: customers' credit balances as invoices moved them",
)
@click.option("--from", "start", callback=_moment, help="occurred_at >= this (ISO date/instant)")
@click.option("--to", "end", callback=_moment, help="occurred_at < this (ISO date/instant)")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The file to write",
)
def export(
    export_format: str,
    dataset: str,
    start: datetime | None,
    end: datetime | None,
    output: Path,
) -> None:
    """Write the ledger to a file, in ledger order, with a progress bar."""
    from service.adapters.ledger_repository import TimeWindow
    from service.domain.errors import DomainError
    from service.services.ledger_export import Dataset, ExportFormat, count_rows, export_to_file

    window = TimeWindow(start, end)
    chosen = Dataset(dataset)
    with _engine() as engine:
        try:
            total = count_rows(engine, window, chosen)
            with click.progressbar(
                length=total, label=f"exporting {total} rows", file=sys.stderr
            ) as bar:
                written = export_to_file(
                    engine,
                    ExportFormat(export_format),
                    window,
                    output,
                    on_rows=bar.update,
                    dataset=chosen,
                )
        except DomainError as exc:
            output.unlink(missing_ok=True)
            raise click.ClickException(exc.detail) from None
    click.echo(f"wrote {written} rows to {output}")


@click.group()
def report() -> None:
    """Revenue reports."""


def _row(item: dict[str, Any]) -> str:
    engines = item["expansion_by_engine_minor"]
    return (
        f"{item['period_start']:%Y-%m-%d}  {item['currency']}  "
        f"{item['starting_mrr_minor']:>12}  {item['new_minor']:>10}  "
        f"{engines['seat']:>9} {engines['upsell']:>9} {engines['addon']:>9} "
        f"{engines['strategic']:>9} {engines['price_uplift']:>9}  "
        f"{item['contraction_minor']:>10}  {item['churn_minor']:>10}  "
        f"{item['reactivation_minor']:>10}  {item['ending_mrr_minor']:>12}  "
        f"{item['nrr'] or '-':>7}  {item['grr'] or '-':>7}  {item['quick_ratio'] or '-':>7}  "
        f"{item['expansion_share'] or '-':>7}"
    )


@report.command("nrr")
@click.option("--from", "start", callback=_moment, required=True, help="ISO date or instant")
@click.option("--to", "end", callback=_moment, required=True, help="ISO date or instant")
@click.option(
    "--granularity",
    type=click.Choice(["month", "quarter"]),
    default="month",
    show_default=True,
    help="One row per calendar month or quarter",
)
@click.option("--json", "as_json", is_flag=True, help="Print the same JSON the API returns")
def nrr(start: datetime, end: datetime, granularity: str, as_json: bool) -> None:
    """NRR, GRR and MRR movements per period and currency (amounts in minor units)."""
    from service.domain.errors import DomainError
    from service.domain.ledger import Granularity
    from service.services.reports import nrr_report, report_document

    with _engine() as engine:
        try:
            document = report_document(nrr_report(engine, start, end, Granularity(granularity)))
        except DomainError as exc:
            raise click.BadParameter(exc.detail, param_hint=f"--{exc.field or 'from'}") from None
    if as_json:
        from service.api.ledger_schemas import NrrReportOut

        # Serialised by the API's own model: the same JSON, instants in UTC with Z.
        click.echo(NrrReportOut.model_validate(document).model_dump_json(indent=2, by_alias=True))
        return
    click.echo(
        "period      cur      starting         new      seat    upsell     addon strategic"
        "     price  contraction       churn  reactivation      ending      nrr      grr    quick"
        "  x-share"
    )
    for item in document["periods"]:
        click.echo(_row(item))
    funnel = document["offer_funnel"]
    click.echo(
        "\noffer funnel   engine     window     served      seen  accepted  conversion (of seen)"
    )
    for row in funnel["rows"]:
        window = "inside" if row["in_activation_window"] else "outside"
        click.echo(
            f"               {row['engine']:<10} {window:<8} {row['served']:>8}  {row['seen']:>8}  "
            f"{row['accepted']:>8}  {row['conversion'] or '-':>10}"
        )
    median = funnel["median_days_to_first_expansion"] or "-"
    click.echo(f"median days from activation to first expansion: {median}")
