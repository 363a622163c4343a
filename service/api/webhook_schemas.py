"""Response bodies of the webhook endpoint."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.services.webhooks import Outcome


class WebhookReceiptOut(BaseModel):
    status: Outcome = Field(
        description="processed: the account was compared with Stripe and updated if it differed; "
        "ignored: not an event Upshift syncs, no account is billed by it, or its subscription "
        "has a price the catalog does not sell (the account is left as it is; see `detail`); "
        "duplicate: handled "
        "before, nothing done; pending_retry: stored, processing failed and is retried by "
        "`upshift webhooks process` or Stripe's redelivery"
    )
    event_id: str
    type: str
    account_id: str | None = None
    detail: str | None = None


# Documents the body the endpoint reads raw (the signature covers its exact bytes).
STRIPE_EVENT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "A Stripe event exactly as Stripe sends it",
                "properties": {
                    "id": {"type": "string"},
                    "object": {"type": "string"},
                    "type": {"type": "string"},
                    "created": {"type": "integer"},
                    "data": {"type": "object"},
                },
            }
        }
    },
}
