"""Set-based SQL of usage: accounts as usage sees them, events, counters and milestones."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, TextClause, bindparam, text

from service.adapters.account_reading import AccountRecord
from service.adapters.bulk_sql import BulkSqlRepository
from service.adapters.orm import AccountRow, UTCDateTime
from service.adapters.usage_tables import MilestoneRow
from service.domain.catalog import Catalog, Interval
from service.domain.usage import (
    BillingCycle,
    LimitBook,
    UsageAccount,
    UsageSnapshot,
    build_snapshot,
    current_period_starts,
)

INTERVAL_MONTHS = {interval.value: interval.months for interval in Interval}


class AccountColumns(NamedTuple):
    """An account's plan, status and billing period, read without the ORM (signals read
    thousands at a time); the attributes are named as AccountRow's."""

    id: str
    tier: str
    interval: str
    seats: int
    addons: dict[str, int]
    currency: str
    status: str
    current_period_start: datetime
    current_period_end: datetime
    catalog_version: str
    limits_version: str


def usage_account(row: AccountRow | AccountColumns | AccountRecord | Row[Any]) -> UsageAccount:
    """The usage view of an account row (ORM or a Core row with the same columns)."""
    return UsageAccount(
        account_id=row.id,
        tier=row.tier,
        seats=row.seats,
        addons=row.addons or {},
        cycle=BillingCycle(
            row.current_period_start, row.current_period_end, INTERVAL_MONTHS[row.interval]
        ),
        limits_version=row.limits_version,
    )


# Rows of new events: (event_id, account_id, feature, action, quantity, occurred_at,
# period_start, received_at).
EVENT_COLUMNS = (
    ("event_id", "text"),
    ("account_id", "text"),
    ("feature", "text"),
    ("action", "text"),
    ("quantity", "int"),
    ("occurred_at", "time"),
    ("period_start", "time"),
    ("received_at", "time"),
)
# Rows of counter changes: (account_id, feature, period_start, period_end, delta, reading,
# reading_at, updated_at); reading and reading_at are None when the batch holds no reading.
COUNTER_CHANGE_COLUMNS = (
    ("account_id", "text"),
    ("feature", "text"),
    ("period_start", "time"),
    ("period_end", "time"),
    ("delta", "int"),
    ("reading", "int"),
    ("reading_at", "time"),
    ("updated_at", "time"),
)


class CountedEvents(NamedTuple):
    """What count_events did: the ids it inserted, and the counter totals (in the order of
    the changes) when every event was new; None when some were known, nothing counted."""

    new_ids: set[str]
    totals: list[int] | None


class UsageRepository(BulkSqlRepository):
    """Usage events, counters and milestones."""

    def accounts(self, account_ids: Collection[str]) -> dict[str, UsageAccount]:
        """What usage needs of each account, in one query (no ORM objects on the hot path)."""
        if not account_ids:
            return {}
        result = self._execute(
            self._statement("usage_accounts", self._accounts_sql),
            {"ids": self._encode_values(account_ids)},
        )
        # Most accounts share a handful of add-on sets: decode each distinct one once.
        addon_sets: dict[str, dict[str, int]] = {}
        accounts = {}
        for account_id, tier, interval, seats, addons_json, start, end, limits in result.all():
            addons = addon_sets.get(addons_json)
            if addons is None:
                addons = addon_sets[addons_json] = json.loads(addons_json) if addons_json else {}
            cycle = BillingCycle(start, end, INTERVAL_MONTHS[interval])
            accounts[account_id] = UsageAccount(account_id, tier, seats, addons, cycle, limits)
        return accounts

    def _accounts_sql(self) -> TextClause:
        time = UTCDateTime()
        return text(f"""
            SELECT id, tier, interval, seats, CAST(addons AS text), current_period_start,
                current_period_end, limits_version
            FROM accounts WHERE id IN ({self._values_source("ids")})
        """).columns(current_period_start=time, current_period_end=time)

    def snapshots(
        self,
        catalog: Catalog,
        accounts: Sequence[UsageAccount],
        now: datetime,
        book: LimitBook | None = None,
    ) -> dict[str, UsageSnapshot]:
        """Usage against limits at `now` of each account, with one counters query."""
        if len(accounts) == 1:
            only = accounts[0]
            starts = current_period_starts(catalog, only.cycle, now)
            counters = {only.account_id: self.counters(only.account_id, starts)}
        else:
            counters = self.current_counters([a.account_id for a in accounts], now)
        book = book or LimitBook(catalog)
        return {
            a.account_id: build_snapshot(catalog, a, counters.get(a.account_id, {}), now, book)
            for a in accounts
        }

    def count_events(
        self, events: Sequence[Sequence[Any]], changes: Sequence[Sequence[Any]]
    ) -> CountedEvents:
        """Insert the events whose id is new and, if all of them were, apply `changes` (the
        counter changes folded from all the events): one round trip on PostgreSQL.

        Rows follow EVENT_COLUMNS, sorted by event id, and COUNTER_CHANGE_COLUMNS, sorted by
        key. When some event was known already, no counter changes: the caller folds the new
        events alone and calls apply_counter_changes. Sorted ids make concurrent batches meet
        duplicates in the same order (no deadlock); a concurrent batch holding the same id
        makes this one wait, then skip it.
        """
        if not events:
            return CountedEvents(set(), [])
        if not self.postgres:
            # SQLite has no data-modifying WITH: two statements, in-process and serialized.
            new_ids = self.insert_new_events(events)
            if len(new_ids) < len(events):
                return CountedEvents(new_ids, None)
            return CountedEvents(new_ids, self.apply_counter_changes(changes))
        result = self._execute(
            self._statement("count_events", self._count_events_sql),
            {
                "events": self._encode(EVENT_COLUMNS, events),
                "event_count": len(events),
                "changes": self._encode(COUNTER_CHANGE_COLUMNS, changes),
            },
        )
        returned = result.all()
        # Counter rows carry a feature; the ids of new events come back (alone) only when
        # some events were known, and then no counter changed.
        if returned and returned[0][1] is None:
            return CountedEvents({row[0] for row in returned}, None)
        if not returned and changes:
            return CountedEvents(set(), None)
        return CountedEvents({row[0] for row in events}, self._totals(changes, returned))

    def insert_new_events(self, rows: Sequence[Sequence[Any]]) -> set[str]:
        """Insert the events (rows as for count_events) whose id is new; return those ids."""
        if not rows:
            return set()
        result = self._bulk(
            "new_events",
            "usage_events",
            EVENT_COLUMNS,
            "ON CONFLICT DO NOTHING RETURNING event_id",
            rows,
        )
        return set(result.scalars())

    def apply_counter_changes(self, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Apply counter changes (rows as for count_events); return the new totals, in order.

        An increment is added under the row lock, so concurrent batches on one counter add up
        exactly; a reading replaces the counter unless a later one is applied already.
        """
        if not rows:
            return []
        result = self._execute(
            self._statement("apply_counter_changes", lambda: text(self._counter_changes_sql())),
            {"changes": self._encode(COUNTER_CHANGE_COLUMNS, rows)},
        )
        return self._totals(rows, result.all())

    def _totals(self, changes: Sequence[Sequence[Any]], returned: Sequence[Any]) -> list[int]:
        # The period comes back in the encoding it went in (microseconds, or SQLite's text),
        # to match rows without turning every returned timestamp into a datetime.
        encode = self._time_encoder()
        totals = {(a, f, p): used for a, f, p, used in returned}
        return [totals[(row[0], row[1], encode(row[2]))] for row in changes]

    def _counter_changes_sql(self, condition: str = "true") -> str:
        """The upsert of counter changes from `:changes`, for rows meeting `condition`."""
        key = "account_id, feature, period_start"
        newer = "c.reading_at IS NULL OR excluded.reading_at >= c.reading_at"
        return f"""
            INSERT INTO usage_counters AS c
                (account_id, feature, period_start, period_end, used, reading_at, updated_at)
            SELECT account_id, feature, period_start, period_end, COALESCE(reading, delta),
                reading_at, updated_at
            FROM ({self._rows_source(COUNTER_CHANGE_COLUMNS, "changes")}) AS r
            WHERE {condition}
            ON CONFLICT ({key}) DO UPDATE SET
                used = CASE
                    WHEN excluded.reading_at IS NULL THEN c.used + excluded.used
                    WHEN {newer} THEN excluded.used
                    -- a reading older than the one applied: only the increments count
                    ELSE c.used + (
                        SELECT d.delta
                        FROM ({self._rows_source(COUNTER_CHANGE_COLUMNS, "changes")}) AS d
                        WHERE (d.account_id, d.feature, d.period_start)
                            = (excluded.account_id, excluded.feature, excluded.period_start)
                    ) END,
                reading_at = CASE
                    WHEN excluded.reading_at IS NOT NULL AND ({newer}) THEN excluded.reading_at
                    ELSE c.reading_at END,
                updated_at = excluded.updated_at
            RETURNING account_id, feature, {self._encoded_time_sql("period_start")}, used
        """

    def _count_events_sql(self) -> TextClause:
        # The counters change only if every event was new (all inserted here): the count is
        # taken before the upsert starts, so the events are in and locked first, as ever.
        names = ", ".join(name for name, _ in EVENT_COLUMNS)
        all_new = "(SELECT count(*) FROM new_events) = :event_count"
        return text(f"""
            WITH new_events AS (
                INSERT INTO usage_events ({names})
                {self._rows_source(EVENT_COLUMNS, "events")}
                ON CONFLICT DO NOTHING RETURNING event_id
            ), counted AS ({self._counter_changes_sql(all_new)})
            SELECT * FROM counted
            UNION ALL
            SELECT event_id, NULL, NULL, NULL FROM new_events WHERE NOT {all_new}
        """)

    def counters(
        self, account_id: str, period_starts: Collection[datetime]
    ) -> dict[tuple[str, datetime], int]:
        """One account's counters of the given periods, by (feature, period start)."""
        result = self._execute(
            self._statement("counters", self._counters_sql),
            {"id": account_id, "starts": self._encode_values(period_starts, "time")},
        )
        return {(feature, start): used for feature, start, used in result.all()}

    def _counters_sql(self) -> TextClause:
        return text(f"""
            SELECT feature, period_start, used FROM usage_counters
            WHERE account_id = :id AND period_start IN ({self._values_source("starts", "time")})
        """).columns(period_start=UTCDateTime())

    def current_counters(
        self, account_ids: Collection[str], now: datetime
    ) -> dict[str, dict[tuple[str, datetime], int]]:
        """The counters current at `now` of several accounts, per account (lifetime ones have
        no end)."""
        by_account: dict[str, dict[tuple[str, datetime], int]] = {}
        if not account_ids:
            return by_account
        result = self._execute(
            self._statement("current_counters", self._current_counters_sql),
            {"ids": self._encode_values(account_ids), "now": now},
        )
        for account_id, feature, start, used in result.all():
            by_account.setdefault(account_id, {})[(feature, start)] = used
        return by_account

    def _current_counters_sql(self) -> TextClause:
        time = UTCDateTime()
        return (
            text(f"""
                SELECT account_id, feature, period_start, used FROM usage_counters
                WHERE account_id IN ({self._values_source("ids")})
                    AND (period_end IS NULL OR (period_start <= :now AND period_end > :now))
            """)
            .bindparams(bindparam("now", type_=time))
            .columns(period_start=time)
        )

    def insert_milestones(self, rows: Sequence[Mapping[str, Any]]) -> set[str]:
        """Insert milestones not reached before; return the names inserted."""
        if not rows:
            return set()
        statement = self._insert(MilestoneRow).on_conflict_do_nothing().returning(MilestoneRow.name)
        return set(self.session.scalars(statement, list(rows)))

    def milestones(self, account_ids: Collection[str]) -> dict[str, dict[str, datetime]]:
        """Milestones reached, per account, by name."""
        by_account: dict[str, dict[str, datetime]] = {}
        if not account_ids:
            return by_account
        result = self._execute(
            self._statement("milestones", self._milestones_sql),
            {"ids": self._encode_values(account_ids)},
        )
        for account_id, name, reached_at in result.all():
            by_account.setdefault(account_id, {})[name] = reached_at
        return by_account

    def _milestones_sql(self) -> TextClause:
        return text(f"""
            SELECT account_id, name, reached_at FROM usage_milestones
            WHERE account_id IN ({self._values_source("ids")})
        """).columns(reached_at=UTCDateTime())
