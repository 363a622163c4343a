"""The embedded billing backend: subscriptions, invoices and payments in our own database."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy.orm import Session

from service.adapters.billing_repository import InvoiceDraft, InvoiceLineDraft, InvoiceRepository
from service.adapters.orm import AccountRow
from service.domain.accounts import Plan, PlanLine
from service.domain.catalog import Interval
from service.domain.errors import PaymentDeclined
from service.domain.money import Money
from service.domain.periods import Period
from service.domain.quotes import Quote
from service.ports import AppliedChange, BillingAccount, PaymentState, Preview, ScheduledChange

_INVOICE_KEYS = {"subscription_cycle": "renewal"}


class LocalBillingGateway:
    """Payments always succeed, except for accounts listed as declining (tests and the demo).

    The local engine is the price authority here, so a preview is the quote itself.
    """

    name = "local"
    remote = False

    def __init__(self, session: Session, declining_accounts: frozenset[str] | set[str]) -> None:
        self.session = session
        self.declining_accounts = declining_accounts

    def preview(self, account: BillingAccount, quote: Quote) -> Preview:
        return Preview(lines=quote.lines, amount_due=quote.amount_due)

    def payment_state(self, account: BillingAccount) -> PaymentState:
        """Local payments never wait for the customer: the account's own plan, nothing pending."""
        row = self._account(account.account_id)
        plan = Plan(row.tier, Interval(row.interval), row.seats, dict(row.addons or {}))
        return PaymentState(plan=plan, pending_invoice=None)

    def apply(self, account: BillingAccount, quote: Quote, idempotency_key: str) -> AppliedChange:
        invoice, applied = self.change_invoice(account, quote, idempotency_key)
        # A negative total (say a yearly plan's unused time credited against a monthly one) is
        # owed to the customer: it goes to the credit balance, which the next renewal invoices
        # use first.
        credit = credit_owed(quote)
        if credit:
            self._account(account.account_id).credit_balance_minor += credit
        InvoiceRepository(self.session).add([invoice])
        return applied

    def change_invoice(
        self, account: BillingAccount, quote: Quote, idempotency_key: str
    ) -> tuple[InvoiceDraft, AppliedChange]:
        """`apply` without writing: the change's invoice and what was applied. The caller writes
        the invoice (a batch's together: InvoiceRepository.add) and credits the account
        `credit_owed(quote)` (a catalog migration moves thousands of accounts at once)."""
        if account.account_id in self.declining_accounts and quote.amount_due.minor > 0:
            raise PaymentDeclined("Your card was declined.", code="card_declined")
        # The change is charged what its quote says; a negative total is owed to the customer.
        charged = max(quote.amount_due.minor, 0)
        invoice = _invoice(
            idempotency_key,
            account.account_id,
            "subscription_update",
            quote.amount_due,
            charged,
            Period(quote.proration_date, quote.period.end)
            if quote.proration_date < quote.period.end
            else quote.period,
            tuple(
                InvoiceLineDraft(
                    line.key,
                    line.description,
                    line.quantity,
                    line.amount.minor,
                    line.period,
                    line.proration,
                )
                for line in quote.lines
            ),
            created_at=quote.proration_date,
        )
        applied = AppliedChange(
            invoice_id=invoice.id,
            amount_charged=Money(charged, quote.amount_due.currency),
            subscription_id=account.subscription_id,
            customer_id=account.customer_id,
            period=quote.period,
            billed=quote.new_billed,
        )
        return invoice, applied

    def schedule(
        self, account: BillingAccount, quote: Quote, idempotency_key: str
    ) -> ScheduledChange:
        # The renewal applies it (services.renewals); nothing to tell a provider here.
        return ScheduledChange(schedule_id=None, effective_at=quote.effective_at)

    def invoice_period(
        self,
        account_id: str,
        currency: str,
        lines: list[PlanLine],
        period: Period,
        billing_reason: str = "subscription_create",
        *,
        free: bool = False,
    ) -> bool:
        """Invoice a period in full at its start (the first period, or with billing_reason
        "subscription_cycle" a renewal); `free`: a trial's, every line at 0. The account's
        credit balance pays first. Returns whether the payment succeeded."""
        row = self._account(account_id)
        invoice = self.period_invoice(
            account_id,
            currency,
            lines,
            period,
            row.credit_balance_minor,
            billing_reason,
            free=free,
        )
        row.credit_balance_minor -= invoice.credit_applied_minor
        InvoiceRepository(self.session).add([invoice])
        return invoice.paid

    def period_invoice(
        self,
        account_id: str,
        currency: str,
        lines: list[PlanLine],
        period: Period,
        credit_balance: int,
        billing_reason: str = "subscription_cycle",
        *,
        free: bool = False,
    ) -> InvoiceDraft:
        """The invoice of a whole period at its start, paid from `credit_balance` first (Stripe
        applies the customer balance when it finalizes an invoice:
        docs.stripe.com/billing/customer/balance), then by card; not written (the renewals
        write a batch's invoices together: InvoiceRepository.add)."""
        amounts = [0 if free else line.amount.minor for line in lines]
        total = sum(amounts)
        credit = min(credit_balance, total)
        due = total - credit
        paid = due == 0 or account_id not in self.declining_accounts
        return _invoice(
            # (renewals keep the key their invoices always had)
            f"{_INVOICE_KEYS.get(billing_reason, billing_reason)}:{account_id}:"
            f"{period.start.isoformat()}",
            account_id,
            billing_reason,
            Money(total, currency),
            due if paid else 0,
            period,
            tuple(
                InvoiceLineDraft(line.key, line.description, line.quantity, amount, period, False)
                for line, amount in zip(lines, amounts, strict=True)
            ),
            created_at=period.start,
            credit_applied=credit,
        )

    def _account(self, account_id: str) -> AccountRow:
        """The account's row, locked by the change or renewal that bills it."""
        row = self.session.get(AccountRow, account_id)
        if row is None:
            raise LookupError(f"account {account_id!r} is not in this transaction")
        return row


def credit_owed(quote: Quote) -> int:
    """What an applied change adds to the customer's credit balance: a negative total."""
    return max(-quote.amount_due.minor, 0)


def _invoice(
    idempotency_key: str,
    account_id: str,
    billing_reason: str,
    amount_due: Money,
    amount_paid: int,
    period: Period,
    lines: tuple[InvoiceLineDraft, ...],
    *,
    created_at: datetime,
    credit_applied: int = 0,
) -> InvoiceDraft:
    return InvoiceDraft(
        id="in_local_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20],
        account_id=account_id,
        billing_reason=billing_reason,
        status="paid" if amount_paid + credit_applied == max(amount_due.minor, 0) else "open",
        currency=amount_due.currency,
        amount_due_minor=amount_due.minor,
        credit_applied_minor=credit_applied,
        amount_paid_minor=amount_paid,
        period=period,
        created_at=created_at,
        lines=lines,
    )
