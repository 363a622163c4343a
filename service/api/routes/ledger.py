"""Finance reads the expansion ledger: paged entries and a streamed CSV / JSONL export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from service.api.deps import FinanceDep, SessionDep
from service.api.ledger_schemas import EntriesQuery, ExportQuery, LedgerEntryOut, LedgerPageOut
from service.api.problems import problem_responses
from service.domain.errors import ValidationFailed
from service.services.ledger import LedgerEntry
from service.services.ledger_entries import EntryFilters, list_entries
from service.services.ledger_export import (
    CREDIT_COLUMNS,
    EXPORT_COLUMNS,
    MEDIA_TYPES,
    Dataset,
    ExportFormat,
    TimeWindow,
    stream_export,
)

router = APIRouter(prefix="/v1", tags=["ledger"])

_COLUMN_TABLE = "\n".join(f"- `{name}`: {meaning}" for name, meaning in EXPORT_COLUMNS.items())
_CREDIT_TABLE = "\n".join(f"- `{name}`: {meaning}" for name, meaning in CREDIT_COLUMNS.items())


def entry_out(row: LedgerEntry) -> LedgerEntryOut:
    return LedgerEntryOut.model_validate(row, from_attributes=True)


@router.get(
    "/ledger/entries",
    response_model=LedgerPageOut,
    responses=problem_responses(401, 403, 422),
    summary="List ledger entries",
)
def entries(
    session: SessionDep, _: FinanceDep, query: Annotated[EntriesQuery, Query()]
) -> LedgerPageOut:
    """Entries in ledger (append) order, one MRR movement each; `from`/`to` filter on
    `occurred_at` as [from, to)."""
    page = list_entries(
        session,
        EntryFilters(
            start=query.from_,
            end=query.to,
            account_id=query.account,
            kind=query.kind,
            engine=query.engine,
        ),
        cursor=query.cursor,
        limit=query.limit,
    )
    return LedgerPageOut(
        entries=[entry_out(row) for row in page.entries], next_cursor=page.next_cursor
    )


@router.get(
    "/ledger/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The ledger, streamed",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    }
    | problem_responses(401, 403, 422),
    summary="Export the ledger as CSV or JSONL",
    description=(
        "Streams every entry with `occurred_at` in [from, to) in ledger order, in constant "
        "memory: `text/csv` (a header row, then one row per entry) or `application/x-ndjson` "
        "(one JSON object per line, the same keys; decimals as strings). Money is integer "
        "minor units plus a decimal twin in major units for spreadsheets.\n\nColumns:\n"
        + _COLUMN_TABLE
        + "\n\nWith `dataset=credit`: one row per invoice that moved a customer's credit "
        "balance (local billing), in time order, the balance counted from the first such "
        "invoice even when `from` is later. Columns:\n" + _CREDIT_TABLE
    ),
)
def export(
    request: Request, _: FinanceDep, query: Annotated[ExportQuery, Query()]
) -> StreamingResponse:
    if query.from_ is not None and query.to is not None and query.to <= query.from_:
        raise ValidationFailed("'to' must be after 'from'", field="to")
    chosen = ExportFormat(query.format)
    dataset = Dataset(query.dataset)
    chunks = stream_export(
        request.app.state.engine, chosen, TimeWindow(query.from_, query.to), dataset=dataset
    )
    name = "ledger" if dataset is Dataset.MOVEMENTS else "ledger-credit"
    return StreamingResponse(
        (chunk.data for chunk in chunks),
        media_type=MEDIA_TYPES[chosen],
        headers={"Content-Disposition": f'attachment; filename="{name}.{chosen.value}"'},
    )
