"""Stripe webhooks: signature verified, stored once in the inbox, processed in the request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from service.api.deps import CatalogDep, ClockDep, SessionDep
from service.api.problems import problem_responses
from service.api.webhook_schemas import STRIPE_EVENT_BODY, WebhookReceiptOut
from service.domain.errors import DomainError
from service.services.webhooks import Outcome, receive_stripe_event

router = APIRouter(prefix="/v1", tags=["webhooks"])

MAX_EVENT_BYTES = 1 << 20  # Stripe's events are far smaller; anything bigger is not one


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    title = "Payload too large"
    status = 413


async def raw_body(request: Request) -> bytes:
    """The body exactly as sent: the signature covers these bytes, not a re-serialization."""
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_EVENT_BYTES:
            raise PayloadTooLarge(f"a Stripe event is at most {MAX_EVENT_BYTES} bytes here")
    return bytes(body)


@router.post(
    "/webhooks/stripe",
    response_model=WebhookReceiptOut,
    responses={
        503: {
            "model": WebhookReceiptOut,
            "description": "Stored, but processing failed: not a 2xx, so that Stripe delivers it "
            "again (docs.stripe.com/webhooks: any other answer is a failed delivery, retried "
            "with exponential backoff for up to three days in live mode)",
        }
    }
    | problem_responses(400, 413),
    openapi_extra={"requestBody": STRIPE_EVENT_BODY},
    summary="Receive a Stripe event",
    description="Stripe calls this with events, signed with the endpoint's secret "
    "(`Stripe-Signature`). A missing, bad or stale (over 5 minutes) signature is 400 and nothing "
    "is stored; so is an event rendered in another Stripe API version than Upshift reads (400 "
    "`unexpected_api_version`: create the endpoint with `upshift stripe webhook-endpoint "
    "create`, which pins the version). A verified event is stored once in the inbox (a replay "
    "of a handled event is answered `duplicate` and does nothing) and processed inline, in the "
    "same transaction: "
    "subscription and invoice events re-fetch the subscription from Stripe and bring the "
    "account's plan, status and period to it, writing a ledger movement with source `webhook` "
    "when MRR moved. When processing fails the event stays stored with its error and the answer "
    "is 503, so that Stripe delivers it again (a 2xx would tell Stripe it was delivered, and it "
    "would never retry); `upshift webhooks process` retries it too.",
)
def receive_stripe_webhook(
    request: Request,
    payload: Annotated[bytes, Depends(raw_body)],
    session: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    stripe_signature: Annotated[
        str | None, Header(alias="Stripe-Signature", description="Stripe's t=…,v1=… signature")
    ] = None,
) -> JSONResponse:
    receipt = receive_stripe_event(
        session,
        getattr(request.app.state, "stripe", None),
        catalog,
        clock.now(),
        payload,
        stripe_signature,
    )
    body = WebhookReceiptOut(
        status=receipt.status,
        event_id=receipt.event_id,
        type=receipt.event_type,
        account_id=receipt.account_id,
        detail=receipt.detail,
    )
    # Any 2xx tells Stripe the event was delivered: only a non-2xx makes it deliver again.
    status = 503 if receipt.status is Outcome.pending_retry else 200
    return JSONResponse(body.model_dump(mode="json"), status_code=status)
