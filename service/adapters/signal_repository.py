"""Set-based SQL of the signals: threshold crossings and the sweep's account stream."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Text, TextClause, bindparam, cast, func, select, text

from service.adapters.bulk_sql import BulkSqlRepository
from service.adapters.orm import AccountRow, UTCDateTime
from service.adapters.outbox_repository import OutboxRepository
from service.adapters.usage_repository import INTERVAL_MONTHS, AccountColumns
from service.adapters.usage_tables import CrossingRow
from service.domain.catalog import SEATS_FEATURE
from service.domain.thresholds import Crossing
from service.domain.usage import BillingCycle, UsageAccount


class CounterReading(NamedTuple):
    """A counter with what is needed to evaluate it: its account's plan and billing cycle."""

    account_id: str
    tier: str
    interval: str
    seats: int
    addons_json: str | None
    current_period_start: datetime
    current_period_end: datetime
    feature: str
    period_start: datetime
    period_end: datetime | None
    used: int
    limits_version: str

    def account(self, addons: Mapping[str, int]) -> UsageAccount:
        cycle = BillingCycle(
            self.current_period_start, self.current_period_end, INTERVAL_MONTHS[self.interval]
        )
        return UsageAccount(
            self.account_id, self.tier, self.seats, addons, cycle, self.limits_version
        )


def crossing_of(row: CrossingRow) -> Crossing:
    """The domain view of a recorded crossing."""
    return Crossing(
        id=row.id,
        account_id=row.account_id,
        threshold_key=row.threshold_key,
        feature=row.feature,
        level=row.level,
        at_percent=row.at_percent,
        used=row.used,
        limit=row.limit_value,
        period_start=row.period_start,
        period_end=row.period_end,
        recorded_at=row.recorded_at,
        motion=row.motion,
        acv_minor=row.acv_minor,
        currency=row.currency,
        readiness_score=row.readiness_score,
        reasons=tuple(row.readiness_reasons),
    )


_CROSSING_COLUMNS = (
    ("id", "text"),
    ("account_id", "text"),
    ("threshold_key", "text"),
    ("feature", "text"),
    ("level", "text"),
    ("at_percent", "int"),
    ("used", "int"),
    ("limit_value", "int"),
    ("period_start", "time"),
    ("period_end", "time"),
    ("motion", "text"),
    ("acv_minor", "int"),
    ("currency", "text"),
    ("readiness_score", "int"),
    ("readiness_reasons", "json"),
    ("catalog_version", "text"),
    ("recorded_at", "time"),
)
_CROSSING_CONFLICT = "ON CONFLICT (account_id, threshold_key, period_start) DO NOTHING"


class SignalRepository(BulkSqlRepository):
    """Threshold crossings, and the account stream the sweep reads."""

    def accounts_for_signals(self, account_ids: Collection[str]) -> list[AccountColumns]:
        """The accounts about to get signals, locked against a concurrent PUT of their plan.

        A PUT locks the account, then inserts its crossings; taking the same lock first here
        means two writers of one crossing never wait on each other in opposite orders.
        """
        statement = self._statement("accounts_for_signals", self._accounts_for_signals_sql)
        # Most accounts share a handful of add-on sets: decode each distinct one once.
        addon_sets: dict[str | None, dict[str, int]] = {}
        accounts = []
        for row in self._execute(statement, {"ids": self._encode_values(account_ids)}).all():
            addons = addon_sets.get(row[4])
            if addons is None:
                addons = addon_sets[row[4]] = json.loads(row[4]) if row[4] else {}
            accounts.append(AccountColumns(*row[:4], addons, *row[5:]))
        return accounts

    def _accounts_for_signals_sql(self) -> TextClause:
        time = UTCDateTime()
        return text(f"""
            SELECT id, tier, interval, seats, CAST(addons AS text), currency, status,
                current_period_start, current_period_end, catalog_version, limits_version
            FROM accounts WHERE id IN ({self._values_source("ids")})
            ORDER BY id {"FOR KEY SHARE" if self.locks_rows else ""}
        """).columns(current_period_start=time, current_period_end=time)

    def recorded_keys(
        self, account_ids: Collection[str], period_starts: Collection[datetime]
    ) -> set[tuple[str, str, datetime]]:
        """(account, threshold key, period start) of crossings already recorded, narrowed."""
        if not account_ids:
            return set()
        result = self._execute(
            self._statement("recorded_keys", self._recorded_keys_sql),
            {
                "ids": self._encode_values(account_ids),
                "starts": self._encode_values(period_starts, "time"),
            },
        )
        return {(a, k, p) for a, k, p in result.all()}

    def _recorded_keys_sql(self) -> TextClause:
        return text(f"""
            SELECT account_id, threshold_key, period_start FROM signal_crossings
            WHERE account_id IN ({self._values_source("ids")})
                AND period_start IN ({self._values_source("starts", "time")})
        """).columns(period_start=UTCDateTime())

    def insert_crossings(self, rows: Sequence[Sequence[Any]]) -> set[str]:
        """Insert the crossings not recorded yet for their period, each with its outbox row
        (created when the crossing was recorded), in one statement on PostgreSQL; return the
        ids inserted. No signal without its cause, and no cause without its signal.

        Rows follow _CROSSING_COLUMNS, sorted by (account, threshold key, period start).
        """
        if not rows:
            return set()
        if not self.postgres:
            # SQLite has no data-modifying WITH: two statements, in the same transaction.
            result = self._bulk(
                "insert_crossings",
                "signal_crossings",
                _CROSSING_COLUMNS,
                f"{_CROSSING_CONFLICT} RETURNING id",
                rows,
            )
            inserted = set(result.scalars())
            OutboxRepository(self.session).enqueue(
                [(row[0], row[-1]) for row in rows if row[0] in inserted]
            )
            return inserted
        statement = self._statement("insert_crossings", self._insert_crossings_sql)
        result = self._execute(statement, {"rows": self._encode(_CROSSING_COLUMNS, rows)})
        return set(result.scalars())

    def _insert_crossings_sql(self) -> TextClause:
        names = ", ".join(name for name, _ in _CROSSING_COLUMNS)
        return text(f"""
            WITH inserted AS (
                INSERT INTO signal_crossings ({names}) {self._rows_source(_CROSSING_COLUMNS)}
                {_CROSSING_CONFLICT}
                RETURNING id, recorded_at, account_id, threshold_key, period_start
            ), queued AS (
                INSERT INTO signal_outbox (signal_id, created_at)
                SELECT id, recorded_at FROM inserted
                ORDER BY account_id, threshold_key, period_start
            )
            SELECT id FROM inserted
        """)

    def crossings_of(self, account_id: str, limit: int) -> list[CrossingRow]:
        return list(
            self.session.scalars(
                select(CrossingRow)
                .where(CrossingRow.account_id == account_id)
                .order_by(CrossingRow.recorded_at.desc(), CrossingRow.threshold_key)
                .limit(limit)
            )
        )

    def crossing_at(
        self, account_id: str, threshold_key: str, period_start: datetime
    ) -> CrossingRow | None:
        """The crossing recorded for this account, threshold and period, if any."""
        return self.session.scalars(
            select(CrossingRow).where(
                CrossingRow.account_id == account_id,
                CrossingRow.threshold_key == threshold_key,
                CrossingRow.period_start == period_start,
            )
        ).one_or_none()

    def page_bounds(self, after_id: str, limit: int) -> tuple[int, str | None]:
        """How many accounts follow `after_id` (at most `limit`) in id order, and the last one."""
        page = (
            select(AccountRow.id)
            .where(AccountRow.id > after_id)
            .order_by(AccountRow.id)
            .limit(limit)
            .subquery()
        )
        count, last_id = self._execute(select(func.count(), func.max(page.c.id))).one()
        return count, last_id

    def plans_between(self, after_id: str, last_id: str) -> list[tuple[str, str, str]]:
        """The distinct (limits version, tier, add-ons as stored JSON text) of the accounts in
        (after, last]."""
        addons = cast(AccountRow.addons, Text)
        result = self._execute(
            select(AccountRow.limits_version, AccountRow.tier, addons)
            .where(AccountRow.id > after_id, AccountRow.id <= last_id)
            .distinct()
        )
        return [(version, tier, text_) for version, tier, text_ in result.all()]

    def counters_reaching(
        self,
        after_id: str,
        last_id: str,
        now: datetime,
        triggers: Sequence[tuple[str, str, str, int, str]],
        seat_percent: int | None,
    ) -> list[CounterReading]:
        """The current counters of the accounts in (after, last] that reach their trigger.

        `triggers` are (tier, add-ons JSON text, feature, at least, limits version); seats
        reach theirs at used × 100 >= seat_percent × purchased seats. The database compares,
        so only the counters worth a closer look travel back.
        """
        statement = self._statement("counters_reaching", self._counters_reaching_sql)
        result = self._execute(
            statement,
            {
                "after": after_id,
                "last": last_id,
                "now": now,
                "triggers": json.dumps(triggers),
                "seats_feature": SEATS_FEATURE,
                "seat_percent": seat_percent,
            },
        )
        return [CounterReading(*row) for row in result.all()]

    def _counters_reaching_sql(self) -> TextClause:
        if self.postgres:
            triggers = (
                "SELECT e->>0 AS tier, e->>1 AS addons, e->>2 AS feature, "
                "CAST(e->>3 AS bigint) AS at_least, e->>4 AS version "
                "FROM json_array_elements(CAST(:triggers AS json)) AS e"
            )
        else:
            triggers = (
                "SELECT json_extract(value, '$[0]') AS tier, json_extract(value, '$[1]') "
                "AS addons, json_extract(value, '$[2]') AS feature, "
                "json_extract(value, '$[3]') AS at_least, json_extract(value, '$[4]') AS version "
                "FROM json_each(:triggers)"
            )
        # MATERIALIZED: take the triggers apart once, not once per joined counter. `lowest` is
        # each feature's lowest trigger (seats: a share of at least one seat); most counters
        # are below it, and are dropped before `near` joins the rest with their accounts.
        sql = f"""
            WITH t AS MATERIALIZED ({triggers}),
            lowest AS MATERIALIZED (
                SELECT feature, min(at_least) AS at_least FROM t GROUP BY feature
                UNION ALL SELECT :seats_feature, (:seat_percent + 99) / 100
            ),
            near AS MATERIALIZED (
                SELECT c.account_id, c.feature, c.period_start, c.period_end, c.used
                FROM usage_counters AS c
                JOIN lowest ON lowest.feature = c.feature AND c.used >= lowest.at_least
                WHERE c.account_id > :after AND c.account_id <= :last
                    AND (c.period_end IS NULL
                        OR (c.period_start <= :now AND c.period_end > :now))
            )
            SELECT a.id, a.tier, a.interval, a.seats, CAST(a.addons AS text),
                a.current_period_start, a.current_period_end,
                c.feature, c.period_start, c.period_end, c.used, a.limits_version
            FROM near AS c
            JOIN accounts AS a ON a.id = c.account_id
            LEFT JOIN t
                ON t.tier = a.tier AND t.addons = CAST(a.addons AS text) AND t.feature = c.feature
                    AND t.version = a.limits_version
            WHERE a.id > :after AND a.id <= :last
                AND CASE WHEN c.feature = :seats_feature
                    THEN a.seats > 0 AND c.used * 100 >= :seat_percent * a.seats
                    ELSE c.used >= t.at_least END
        """
        time = UTCDateTime()
        return (
            text(sql)
            .bindparams(bindparam("now", type_=time))
            .columns(
                current_period_start=time,
                current_period_end=time,
                period_start=time,
                period_end=time,
            )
        )

    def account_count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(AccountRow)) or 0
