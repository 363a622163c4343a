"""The DomainError hierarchy: each error knows its stable code, title, HTTP status and field."""

from __future__ import annotations


class DomainError(Exception):
    """A business rule said no. Rendered as RFC 9457 problem+json by the API layer."""

    code: str = "domain_error"
    title: str = "Request refused"
    status: int = 400
    retry_after_s: int | None = None  # when set, the answer says when to try again
    # Extension members of the problem document (RFC 9457 §3.2), for a client to act on.
    extra: dict[str, object] | None = None

    def __init__(self, detail: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code is not None:
            self.code = code


class ValidationFailed(DomainError):
    code = "validation_error"
    title = "Invalid request"
    status = 422


class NotFound(DomainError):
    code = "not_found"
    title = "Not found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    title = "Conflict"
    status = 409


class CurrencyMismatch(Conflict):
    """Money in one currency would be charged or recorded as another's."""

    code = "currency_mismatch"
    title = "Billed in another currency"


class PaymentDeclined(DomainError):
    code = "payment_declined"
    title = "Payment declined"
    status = 402


class BillingUnavailable(DomainError):
    code = "billing_unavailable"
    title = "Billing provider unavailable"
    status = 503

    def __init__(self, detail: str, *, retry_after_s: int = 5, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_after_s = retry_after_s
