"""One-click upgrades: execute a signed offer or an explicit target, exactly once per key."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt, model_validator

from service.api.deps import (
    AccountAccessDep,
    AccountIdPath,
    CatalogDep,
    ClockDep,
    SignerDep,
    renew_first,
    unit_of_work,
)
from service.api.offer_schemas import PlanOut, TargetIn
from service.api.problems import PROBLEM_MEDIA_TYPE, Problem, problem_responses
from service.api.schemas import MoneyOut, Strict
from service.domain.quotes import ChangeKind
from service.services.quotes import TargetChange
from service.services.upgrades import UpgradeRequest, execute_upgrade

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["upgrades"])


class UpgradeIn(Strict):
    offer_token: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    target: TargetIn | None = None
    expected_amount_due_minor: StrictInt | None = Field(
        default=None,
        description="Refuse (409) unless the amount due now is this. With an offer token it "
        "confirms the amount a 409 quote_changed named (Stripe's price, e.g. after a discount, "
        "tax or credit balance) instead of the offer's",
    )

    @model_validator(mode="after")
    def one_of(self) -> UpgradeIn:
        if (self.offer_token is None) == (self.target is None):
            raise ValueError("send exactly one of offer_token and target")
        return self


class UpgradeOut(BaseModel):
    upgrade_id: str
    account_id: str
    status: Literal["applied", "scheduled"]
    offer_id: str | None
    change: ChangeKind
    target: PlanOut
    proration_date: str
    effective_at: str
    invoice_id: str | None
    amount_charged: MoneyOut
    new_mrr: MoneyOut
    account_version: int
    ledger_entry_id: int | None


class PaymentActionProblem(Problem):
    """402 `requires_action`: the payment waits for the customer's confirmation (3-D Secure)."""

    upgrade_id: str
    invoice_id: str
    hosted_invoice_url: str | None = Field(
        description="The provider's page where the customer confirms and pays"
    )
    expires_at: str | None = Field(description="The change is dropped unpaid after this")
    amount_due: MoneyOut
    target: PlanOut


@router.post(
    "/upgrades",
    response_model=UpgradeOut,
    responses={
        **problem_responses(401, 403, 404, 409, 422, 503),
        402: {
            "model": PaymentActionProblem,
            "description": "payment declined (`payment_failed`, `payment_declined`), not "
            "completed (`payment_not_completed`), or waiting for the customer "
            "(`requires_action`, with the fields below)",
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/PaymentActionProblem"}
                }
            },
        },
    },
    description="Execute an upgrade offer (its signed token) or an explicit target. The offer "
    "is re-quoted at its pinned proration date and refused with 409 (`quote_changed`, "
    "`offer_expired`, `state_changed`) if anything moved; a declined payment is 402 and changes "
    "nothing. A payment the customer's bank wants confirmed (3-D Secure) is 402 "
    "`requires_action` with `hosted_invoice_url`: the customer confirms there, the change is "
    "applied when the payment arrives, and a retry with the same Idempotency-Key answers what "
    "it is now (still 402 `requires_action`, 200 applied, or 402 `payment_not_completed`). The "
    "same Idempotency-Key with the same body replays the first response; with another body it "
    "is 422 `idempotency_key_reused`.",
)
def post_upgrade(
    account_id: AccountIdPath,
    body: UpgradeIn,
    request: Request,
    catalog: CatalogDep,
    clock: ClockDep,
    signer: SignerDep,
    _: AccountAccessDep,
    idempotency_key: Annotated[
        str,
        Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$"),
    ],
) -> Any:  # a JSONResponse whose body is the (possibly replayed) UpgradeOut
    now = clock.now()
    renew_first(request.app.state, account_id, now)
    target = TargetChange(**body.target.model_dump()) if body.target is not None else None
    state = request.app.state
    outcome = execute_upgrade(
        lambda: unit_of_work(state),
        catalog,
        now,
        signer,
        request.app.state.billing_gateways,
        UpgradeRequest(
            account_id=account_id,
            idempotency_key=idempotency_key,
            offer_token=body.offer_token,
            target=target,
            expected_amount_due=body.expected_amount_due_minor,
            body=body.model_dump(mode="json"),
        ),
    )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    if outcome.status_code != 200:
        request.app.state.metrics.problems.labels(outcome.body.get("code", "unknown")).inc()
        return JSONResponse(
            outcome.body,
            status_code=outcome.status_code,
            headers=headers,
            media_type=PROBLEM_MEDIA_TYPE,
        )
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)
