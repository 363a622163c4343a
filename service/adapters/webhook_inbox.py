"""The webhook inbox's SQL: store an event once, find the unhandled ones, find their account."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.adapters.billing_tables import WebhookEventRow
from service.adapters.orm import AccountRow


class WebhookInbox:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(
        self, source: str, external_id: str, *, for_update: bool = False
    ) -> WebhookEventRow | None:
        statement = select(WebhookEventRow).where(
            WebhookEventRow.source == source, WebhookEventRow.external_id == external_id
        )
        if for_update:  # read again once locked (see AccountRepository.get)
            statement = statement.with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(statement).one_or_none()

    def lock(self, event_row_id: int) -> WebhookEventRow | None:
        return self.session.scalars(
            select(WebhookEventRow)
            .where(WebhookEventRow.id == event_row_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one_or_none()

    def add(self, row: WebhookEventRow) -> bool:
        """Insert unless (source, external_id) is stored already; False for a duplicate.

        The savepoint keeps the request's transaction usable when a concurrent delivery of the
        same event won the race to the unique constraint.
        """
        try:
            with self.session.begin_nested():
                self.session.add(row)
                self.session.flush()
        except IntegrityError:
            return False
        return True

    def unhandled_ids(self, source: str, limit: int) -> list[int]:
        return list(
            self.session.scalars(
                select(WebhookEventRow.id)
                .where(WebhookEventRow.source == source, WebhookEventRow.handled_at.is_(None))
                .order_by(WebhookEventRow.id)
                .limit(limit)
            )
        )


def account_version_by_subscription(session: Session, subscription_id: str) -> int | None:
    """The version of the account billed by a subscription, read without a lock."""
    return session.scalars(
        select(AccountRow.version)
        .where(AccountRow.billing_subscription_id == subscription_id)
        .order_by(AccountRow.id)
        .limit(1)
    ).one_or_none()


def account_by_subscription(session: Session, subscription_id: str) -> AccountRow | None:
    """The account billed by a subscription, locked like every other writer of an account."""
    return session.scalars(
        select(AccountRow)
        .where(AccountRow.billing_subscription_id == subscription_id)
        .order_by(AccountRow.id)
        .limit(1)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
