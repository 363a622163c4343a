"""Finance reports: NRR, GRR and movements by engine per period, and the offer funnel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.api.deps import FinanceDep
from service.api.ledger_schemas import NrrQuery, NrrReportOut
from service.api.problems import problem_responses
from service.services.reports import nrr_report, report_document

router = APIRouter(prefix="/v1", tags=["reports"])


@router.get(
    "/reports/nrr",
    response_model=NrrReportOut,
    responses=problem_responses(401, 403, 422),
    summary="NRR / GRR report",
)
def nrr(request: Request, _: FinanceDep, query: Annotated[NrrQuery, Query()]) -> NrrReportOut:
    """Per period (UTC calendar months or quarters; the first and last may be partial) and per
    currency: starting MRR, new, expansion by engine, contraction, churn, reactivation, ending
    MRR, NRR, GRR, quick ratio and expansion share of added MRR. NRR and GRR cover only accounts
    paying at the period start; new and reactivated MRR never enter them. Amounts are integer
    minor units, ratios decimal strings. The offer funnel covers the offers served in [from, to),
    per engine, inside and outside the post-activation window: served (returned by the API),
    seen (reported on screen by the frontend), accepted, and conversion = accepted / seen. At
    most 240 periods per request."""
    report = nrr_report(request.app.state.engine, query.from_, query.to, query.granularity)
    return NrrReportOut.model_validate(report_document(report))
