"""An in-process cache of each account's offer plan (its inputs, ranked and prepared), dropped
on every change this process makes.

The offer endpoint is called on every page load, so it must not pay a database round trip per
call. Entries live `ttl_s` seconds at most, which bounds what another process's change can leave
unseen; an offer priced from a stale entry is still safe, because the upgrade endpoint re-reads
and re-quotes everything under a row lock and refuses with 409 if anything moved.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Generic, Protocol, TypeVar


class PeriodBound(Protocol):
    """An offer plan, or what is built from one: good until the account's period ends."""

    @property
    def period_end(self) -> datetime: ...


PlanT = TypeVar("PlanT", bound=PeriodBound)


class OfferPlanCache(Generic[PlanT]):
    """Per account: its offer plan (services.offers.OfferPlan), or what the API renders of it."""

    def __init__(self, ttl_s: float, max_entries: int = 200_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, PlanT]] = {}

    def get(self, account_id: str, now: datetime) -> PlanT | None:
        entry = self._entries.get(account_id)
        if entry is None:
            return None
        loaded_at, plan = entry
        # A period that has ended needs a renewal first, which only the loader does.
        if time.monotonic() - loaded_at > self.ttl_s or now >= plan.period_end:
            self._entries.pop(account_id, None)
            return None
        return plan

    def put(self, account_id: str, plan: PlanT) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # crude but bounded: a full cache refills from the database
        self._entries[account_id] = (time.monotonic(), plan)

    def invalidate(self, account_ids: Iterable[str]) -> None:
        for account_id in account_ids:
            self._entries.pop(account_id, None)

    def clear(self) -> None:
        self._entries.clear()
