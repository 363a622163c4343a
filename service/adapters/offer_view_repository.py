"""The offers customers saw (offer_views), as the frontend reports them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from service.adapters.bulk_sql import BulkSqlRepository
from service.adapters.offer_tables import OfferViewRow


class OfferViewRepository(BulkSqlRepository):
    def record(self, account_id: str, offer_id: str, seen_at: datetime) -> datetime:
        """Record that the account's customer saw the offer; the first report wins, so a report
        sent twice (a retry, a re-render) counts once. Returns when it was first seen."""
        self._execute(
            self._insert(OfferViewRow)
            .values(account_id=account_id, offer_id=offer_id, seen_at=seen_at)
            .on_conflict_do_nothing()
        )
        first = self.session.scalar(
            select(OfferViewRow.seen_at).where(
                OfferViewRow.account_id == account_id, OfferViewRow.offer_id == offer_id
            )
        )
        assert first is not None  # inserted above, or by an earlier report
        return first
