"""Usage: the product reports usage events and milestones (ingest key); admins read usage."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from service.api.deps import AccountAccessDep, CatalogDep, ClockDep, IngestDep, SessionDep
from service.api.problems import problem_responses
from service.api.routes.accounts import AccountIdPath
from service.api.usage_schemas import (
    AccountUsageOut,
    CrossingOut,
    FeatureUsageOut,
    MilestoneOut,
    MilestonesIn,
    MilestonesOut,
    RejectedEventOut,
    UsageBatchIn,
    UsageIngestOut,
)
from service.domain.usage import UsageEvent, as_utc
from service.services.accounts import get_account
from service.services.usage import (
    MilestoneInput,
    ingest_usage,
    record_milestones,
    usage_snapshot,
)

router = APIRouter(prefix="/v1", tags=["usage"])

INGEST_DESCRIPTION = """
A batch of up to 1,000 usage events, idempotent per `event_id`.

**Batch policy.** A batch that does not match the schema (a missing or mistyped field, a
timestamp without an offset, more than 1,000 events) is refused whole: 422 problem naming the
first bad spot, e.g. `events[3].quantity`, and nothing is written. A well-formed batch is
answered 200: events that break a rule (unknown account or feature, a negative quantity, a
timestamp more than 5 minutes ahead of the service clock or before 2000) are listed in
`rejected` with their index, field, code and message and are not stored (fix and resend them
under the same id); all the other events are applied together, in one transaction. An event
whose id was counted before, in an earlier batch or earlier in this one, is a duplicate: it
changes nothing and is counted in `duplicates`, so a replayed batch is always safe.

Counters are per account, feature and period: the feature's reset period for metered
features (the UTC calendar month, or the account's billing period), lifetime for capacity
features and for `seats`, which reports active seats (use `action: set`). `set` replaces the
counter by a reading taken at `timestamp` unless a later reading is already applied;
increments in the same batch timestamped after the reading are added to it.
"""


class _BatchRequest(Request):
    """A request whose JSON body is parsed and validated as a UsageBatchIn in one pass of
    pydantic-core, straight from the bytes, instead of json.loads then a walk of the dicts.

    FastAPI passes the model instance on without validating it again. A body that fails is
    parsed the ordinary way and left to FastAPI, so its 422 (and the malformed JSON one) stay
    exactly those of every other route.
    """

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = UsageBatchIn.model_validate_json(body)
            except ValidationError:
                self._json = json.loads(body)
        return self._json


class _BatchRoute(APIRoute):
    """The ingest route: its request is a _BatchRequest (documented body unchanged)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_batch(request: Request) -> Response:
            return await handle(_BatchRequest(request.scope, request.receive))

        return handle_batch


def ingest(
    body: UsageBatchIn,
    session: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    _: IngestDep,
) -> UsageIngestOut:
    events = [
        UsageEvent(
            index, e.event_id, e.account_id, e.feature, e.quantity, as_utc(e.timestamp), e.action
        )
        for index, e in enumerate(body.events)
    ]
    result = ingest_usage(session, catalog, clock.now(), events)
    return UsageIngestOut(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[
            RejectedEventOut(
                index=r.index,
                event_id=r.event_id,
                field=f"events[{r.index}].{r.field}",
                code=r.code,
                message=r.message,
            )
            for r in result.rejected
        ],
        signals=[CrossingOut.of(c) for c in result.signals],
    )


router.add_api_route(
    "/usage",
    ingest,
    methods=["POST"],
    response_model=UsageIngestOut,
    description=INGEST_DESCRIPTION,
    responses=problem_responses(401, 403, 422),
    route_class_override=_BatchRoute,
)


@router.get(
    "/accounts/{account_id}/usage",
    response_model=AccountUsageOut,
    responses=problem_responses(401, 403, 404, 422),
)
def account_usage(
    account_id: AccountIdPath,
    session: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    _: AccountAccessDep,
) -> AccountUsageOut:
    """Usage against limits (add-on grants applied) per feature, and seat utilization."""
    now = clock.now()
    snapshot = usage_snapshot(session, catalog, get_account(session, account_id), now)
    return AccountUsageOut(
        account_id=account_id,
        at=now,
        features=[
            FeatureUsageOut(
                feature=usage.feature,
                kind=usage.kind,
                used=usage.used,
                limit=usage.limit,
                utilization_percent=usage.utilization_percent,
                period_start=usage.period.start if usage.period else None,
                period_end=usage.period.end if usage.period else None,
            )
            for usage in snapshot.features.values()
        ],
    )


@router.post(
    "/accounts/{account_id}/milestones",
    response_model=MilestonesOut,
    responses=problem_responses(401, 403, 404, 422),
)
def milestones(
    account_id: AccountIdPath,
    body: MilestonesIn,
    session: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    _: IngestDep,
) -> MilestonesOut:
    """Record activation / value-workflow milestones; a name already reached keeps its first
    timestamp and is reported as a duplicate. Names must be the catalog's (422 otherwise)."""
    result = record_milestones(
        session,
        catalog,
        clock.now(),
        account_id,
        [MilestoneInput(m.name, m.timestamp) for m in body.milestones],
    )
    return MilestonesOut(
        milestones=[
            MilestoneOut(name=m.name, reached_at=m.reached_at, duplicate=m.duplicate)
            for m in result.milestones
        ],
        signals=[CrossingOut.of(c) for c in result.signals],
    )
