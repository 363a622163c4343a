"""An in-process cache of each account's offer plan (its inputs, ranked and prepared), dropped
on every change any process commits.

The offer endpoint is called on every page load, so it must not pay a database round trip per
call. This process's own changes drop entries after their commit; on PostgreSQL every other
process's changes arrive through adapters.change_feed within milliseconds, and a lost listener
connection drops everything. Entries also live `ttl_s` seconds at most. An offer priced from a
stale entry is still safe: the upgrade endpoint re-reads and re-quotes everything under a row
lock and refuses with 409 if anything moved (and drops the entry).

A miss reads the database while changes may commit: `put` keeps a plan only if its account was
not dropped since the read began (`generation` taken before it), so a plan read just before a
change cannot outlive the change's notification.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar


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
        # Drops are numbered: the number of the last drop of each account recently dropped, and
        # of the last drop of everything (older per-account numbers are forgotten then).
        self._lock = threading.Lock()
        self._generation = 0
        self._dropped: dict[str, int] = {}
        self._dropped_all = 0

    @property
    def generation(self) -> int:
        """Take it before reading an account's plan; give it to `put` with the plan."""
        return self._generation

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

    def put(self, account_id: str, plan: PlanT, read_since: int) -> None:
        """Keep `plan`, read from the database after `generation` was `read_since`, unless its
        account was dropped since (the plan may predate that change)."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            if max(self._dropped_all, self._dropped.get(account_id, 0)) > read_since:
                return
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # crude but bounded: a full cache refills from the database
            self._entries[account_id] = (time.monotonic(), plan)

    def invalidate(self, account_ids: Iterable[str]) -> None:
        with self._lock:
            self._generation += 1
            for account_id in account_ids:
                self._entries.pop(account_id, None)
                self._dropped[account_id] = self._generation
            if len(self._dropped) > self.max_entries:
                self._forget_all()

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._forget_all()

    def _forget_all(self) -> None:
        self._entries.clear()
        self._dropped.clear()
        self._dropped_all = self._generation


class AccountCaches:
    """Every per-account cache of the process (offer plans, entitlements), dropped together: a
    change to an account changes what each of them holds."""

    def __init__(self, *caches: OfferPlanCache[Any]) -> None:
        self.caches = caches

    def invalidate(self, account_ids: Iterable[str]) -> None:
        ids = list(account_ids)
        for cache in self.caches:
            cache.invalidate(ids)

    def clear(self) -> None:
        for cache in self.caches:
            cache.clear()
