"""Set-based SQL of the usage area: events, counters, milestones, crossings and the outbox."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Insert,
    Row,
    String,
    Text,
    TextClause,
    and_,
    bindparam,
    cast,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from service.adapters.orm import AccountRow, UTCDateTime
from service.adapters.usage_tables import (
    CrossingRow,
    MilestoneRow,
    SignalDeliveryAttemptRow,
    SignalDeliveryRow,
    SignalOutboxRow,
    UsageCounterRow,
)
from service.domain.catalog import SEATS_FEATURE, Catalog, Interval
from service.domain.thresholds import Crossing
from service.domain.usage import (
    BillingCycle,
    LimitBook,
    UsageAccount,
    UsageSnapshot,
    build_snapshot,
    current_period_starts,
)


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

    def account(self, addons: Mapping[str, int]) -> UsageAccount:
        cycle = BillingCycle(
            self.current_period_start, self.current_period_end, _INTERVAL_MONTHS[self.interval]
        )
        return UsageAccount(self.account_id, self.tier, self.seats, addons, cycle)


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


_INTERVAL_MONTHS = {interval.value: interval.months for interval in Interval}


def usage_account(row: AccountRow | Row[Any]) -> UsageAccount:
    """The usage view of an account row (ORM or a Core row with the same columns)."""
    return UsageAccount(
        account_id=row.id,
        tier=row.tier,
        seats=row.seats,
        addons=row.addons or {},
        cycle=BillingCycle(
            row.current_period_start, row.current_period_end, _INTERVAL_MONTHS[row.interval]
        ),
    )


# Column kinds of the bulk statements and the PostgreSQL expression that reads each from JSON.
# Times travel as integer microseconds since the epoch: exact, and no text to parse.
_PG_CASTS = {
    "text": "e->>{i}",
    "int": "CAST(e->>{i} AS bigint)",
    "time": "(TIMESTAMPTZ 'epoch' + CAST(e->>{i} AS bigint) * INTERVAL '1 microsecond')",
    "json": "e->{i}",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_STATEMENTS: dict[tuple[str, str], TextClause] = {}


class _Repository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect
        self.postgres = self.dialect.name == "postgresql"

    def _insert(self, table: Any) -> Insert:
        # ON CONFLICT is spelled the same on both backends, but lives in each dialect's insert().
        if self.postgres:
            return postgresql.insert(table)
        return sqlite.insert(table)

    @property
    def locks_rows(self) -> bool:
        # SQLite has no row locks: BEGIN IMMEDIATE (see adapters.db) serializes writers instead.
        return self.postgres

    def _among(
        self, column: InstrumentedAttribute[Any], values: Collection[Any]
    ) -> ColumnElement[bool]:
        """`column IN values`; on PostgreSQL with one array parameter, so the SQL never varies.

        `IN (SELECT unnest(:array))` plans as a hash semi-join; `= ANY(:array)` compares each
        row with every element when statistics are missing (a fresh table), 30× slower.
        """
        if not self.postgres:
            return column.in_(list(values))
        element = DateTime(timezone=True) if isinstance(column.type, UTCDateTime) else String()
        array = bindparam(None, list(values), type_=postgresql.ARRAY(element))
        return column.in_(select(func.unnest(array)).scalar_subquery())

    def _bulk(
        self,
        name: str,
        table: str,
        columns: Sequence[tuple[str, str]],
        tail: str,
        rows: Sequence[Sequence[Any]],
    ) -> Any:
        """INSERT many rows passed as ONE JSON parameter, with SQL that never varies:
        json_array_elements() on PostgreSQL, json_each() on SQLite.

        A multi-row VALUES list has a parameter per value (new SQL for every batch size, parsed
        again each time), and psycopg dumps array parameters element by element in Python;
        one json.dumps is a single C call, and both databases take JSON apart in C.
        """
        result, _ = self._bulk_encoded(self._statement(name, table, columns, tail), columns, rows)
        return result

    def _bulk_encoded(
        self, statement: TextClause, columns: Sequence[tuple[str, str]], rows: Sequence[Any]
    ) -> tuple[Any, list[list[Any]]]:
        """Run a bulk statement; also return the rows as encoded, to match RETURNING rows."""
        times = [i for i, (_, kind) in enumerate(columns) if kind == "time"]
        encode_time = self._time_encoder()
        encoded = []
        for row in rows:
            values = list(row)
            for i in times:
                if values[i] is not None:
                    values[i] = encode_time(values[i])
            encoded.append(values)
        return self.session.execute(statement, {"rows": json.dumps(encoded)}), encoded

    def _time_encoder(self) -> Callable[[datetime], Any]:
        if self.postgres:
            return _microseconds
        # SQLite stores times as text: encode them exactly as the UTCDateTime column does.
        processor = UTCDateTime().dialect_impl(self.dialect).bind_processor(self.dialect)
        assert processor is not None
        return processor

    def _statement(
        self, name: str, table: str, columns: Sequence[tuple[str, str]], tail: str
    ) -> TextClause:
        key = (self.dialect.name, name)
        statement = _STATEMENTS.get(key)
        if statement is None:
            statement = _STATEMENTS[key] = self._bulk_sql(table, columns, tail)
        return statement

    def _bulk_sql(self, table: str, columns: Sequence[tuple[str, str]], tail: str) -> TextClause:
        names = ", ".join(column for column, _ in columns)
        if self.postgres:
            picks = ", ".join(_PG_CASTS[kind].format(i=i) for i, (_, kind) in enumerate(columns))
            source = f"SELECT {picks} FROM json_array_elements(CAST(:rows AS json)) AS e"
        else:
            picks = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(columns)))
            # WHERE true: SQLite needs it to parse an upsert whose rows come from a SELECT.
            source = f"SELECT {picks} FROM json_each(:rows) WHERE true"
        return text(f"INSERT INTO {table} ({names}) {source} {tail}")


def _microseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


_EVENT_COLUMNS = (
    ("event_id", "text"),
    ("account_id", "text"),
    ("feature", "text"),
    ("action", "text"),
    ("quantity", "int"),
    ("occurred_at", "time"),
    ("period_start", "time"),
    ("received_at", "time"),
)
_COUNTER_COLUMNS = (
    ("account_id", "text"),
    ("feature", "text"),
    ("period_start", "time"),
    ("period_end", "time"),
    ("used", "int"),
    ("reading_at", "time"),
    ("updated_at", "time"),
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
_OUTBOX_COLUMNS = (("signal_id", "text"), ("created_at", "time"))


def _current(period_start: Any, period_end: Any, now: datetime) -> Any:
    """The counters (or crossings) whose period holds `now`; lifetime ones have no end."""
    return or_(period_end.is_(None), and_(period_start <= now, period_end > now))


class UsageRepository(_Repository):
    """Usage events, counters and milestones."""

    def accounts(self, account_ids: Collection[str]) -> dict[str, UsageAccount]:
        """What usage needs of each account, in one query (no ORM objects on the hot path)."""
        if not account_ids:
            return {}
        result = self.session.execute(
            select(
                AccountRow.id,
                AccountRow.tier,
                AccountRow.interval,
                AccountRow.seats,
                cast(AccountRow.addons, Text),
                AccountRow.current_period_start,
                AccountRow.current_period_end,
            ).where(self._among(AccountRow.id, account_ids))
        )
        # Most accounts share a handful of add-on sets: decode each distinct one once.
        addon_sets: dict[str, dict[str, int]] = {}
        accounts = {}
        for account_id, tier, interval, seats, addons_json, start, end in result:
            addons = addon_sets.get(addons_json)
            if addons is None:
                addons = addon_sets[addons_json] = json.loads(addons_json) if addons_json else {}
            cycle = BillingCycle(start, end, _INTERVAL_MONTHS[interval])
            accounts[account_id] = UsageAccount(account_id, tier, seats, addons, cycle)
        return accounts

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

    def insert_new_events(self, rows: Sequence[Sequence[Any]]) -> set[str]:
        """Insert the events whose id is new; return those ids. Rows must be sorted by id.

        Rows are (event_id, account_id, feature, action, quantity, occurred_at, period_start,
        received_at). Sorted ids make concurrent batches meet duplicates in the same order (no
        deadlock); a concurrent batch holding the same id makes this one wait, then skip it.
        """
        if not rows:
            return set()
        result = self._bulk(
            "new_events",
            "usage_events",
            _EVENT_COLUMNS,
            "ON CONFLICT DO NOTHING RETURNING event_id",
            rows,
        )
        return set(result.scalars())

    def add_to_counters(self, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Add `used` to each counter (creating it at `used`); return the new totals, in order.

        Rows are (account_id, feature, period_start, period_end, used, reading_at, updated_at).
        `used = used + excluded.used` is evaluated under the row lock, so concurrent batches on
        one counter add up exactly. Rows must be sorted by key, for a stable lock order.
        """
        return self._upsert_counters(
            "add_to_counters",
            "used = usage_counters.used + excluded.used, updated_at = excluded.updated_at",
            rows,
        )

    def apply_readings(self, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Replace counters by readings (rows as for add_to_counters, `used` = the reading),
        unless a later reading is already applied; return the new totals, in order."""
        newer = (
            "usage_counters.reading_at IS NULL OR excluded.reading_at >= usage_counters.reading_at"
        )
        return self._upsert_counters(
            "apply_readings",
            f"used = CASE WHEN {newer} THEN excluded.used ELSE usage_counters.used END, "
            f"reading_at = CASE WHEN {newer} THEN excluded.reading_at "
            "ELSE usage_counters.reading_at END, updated_at = excluded.updated_at",
            rows,
        )

    def _upsert_counters(
        self, name: str, assignments: str, rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        if not rows:
            return []
        # The period comes back in the encoding it went in (microseconds, or SQLite's text),
        # to match rows without turning every returned timestamp into a datetime.
        period = (
            "CAST(round(EXTRACT(EPOCH FROM period_start) * 1000000) AS bigint)"
            if self.postgres
            else "period_start"
        )
        statement = self._statement(
            name,
            "usage_counters",
            _COUNTER_COLUMNS,
            "ON CONFLICT (account_id, feature, period_start) DO UPDATE SET "
            f"{assignments} RETURNING account_id, feature, {period}, used",
        )
        result, encoded = self._bulk_encoded(statement, _COUNTER_COLUMNS, rows)
        totals = {(a, f, p): used for a, f, p, used in result}
        return [totals[(row[0], row[1], row[2])] for row in encoded]

    def counters(
        self, account_id: str, period_starts: Collection[datetime]
    ) -> dict[tuple[str, datetime], int]:
        """One account's counters of the given periods, by (feature, period start)."""
        result = self.session.execute(
            select(UsageCounterRow.feature, UsageCounterRow.period_start, UsageCounterRow.used)
            .where(UsageCounterRow.account_id == account_id)
            .where(self._among(UsageCounterRow.period_start, period_starts))
        )
        return {(feature, start): used for feature, start, used in result}

    def current_counters(
        self, account_ids: Collection[str], now: datetime
    ) -> dict[str, dict[tuple[str, datetime], int]]:
        """The counters current at `now` of several accounts, per account."""
        by_account: dict[str, dict[tuple[str, datetime], int]] = {}
        if not account_ids:
            return by_account
        result = self.session.execute(
            select(
                UsageCounterRow.account_id,
                UsageCounterRow.feature,
                UsageCounterRow.period_start,
                UsageCounterRow.used,
            )
            .where(self._among(UsageCounterRow.account_id, account_ids))
            .where(_current(UsageCounterRow.period_start, UsageCounterRow.period_end, now))
        )
        for account_id, feature, start, used in result:
            by_account.setdefault(account_id, {})[(feature, start)] = used
        return by_account

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
        result = self.session.execute(
            select(MilestoneRow.account_id, MilestoneRow.name, MilestoneRow.reached_at).where(
                self._among(MilestoneRow.account_id, account_ids)
            )
        )
        for account_id, name, reached_at in result:
            by_account.setdefault(account_id, {})[name] = reached_at
        return by_account


class SignalRepository(_Repository):
    """Threshold crossings, and the account stream the sweep reads."""

    def accounts_for_signals(self, account_ids: Collection[str]) -> list[AccountRow]:
        """The accounts about to get signals, locked against a concurrent PUT of their plan.

        A PUT locks the account, then inserts its crossings; taking the same lock first here
        means two writers of one crossing never wait on each other in opposite orders.
        """
        statement = (
            select(AccountRow)
            .where(self._among(AccountRow.id, account_ids))
            .order_by(AccountRow.id)
        )
        if self.locks_rows:
            statement = statement.with_for_update(read=True, key_share=True)
        return list(self.session.scalars(statement))

    def recorded_keys(
        self, account_ids: Collection[str], period_starts: Collection[datetime]
    ) -> set[tuple[str, str, datetime]]:
        """(account, threshold key, period start) of crossings already recorded, narrowed."""
        if not account_ids:
            return set()
        result = self.session.execute(
            select(CrossingRow.account_id, CrossingRow.threshold_key, CrossingRow.period_start)
            .where(self._among(CrossingRow.account_id, account_ids))
            .where(self._among(CrossingRow.period_start, period_starts))
        )
        return {(a, k, p) for a, k, p in result}

    def insert_crossings(self, rows: Sequence[Sequence[Any]]) -> set[str]:
        """Insert crossings not recorded yet for their period; return the ids inserted.

        Rows follow _CROSSING_COLUMNS, sorted by (account, threshold key, period start).
        """
        if not rows:
            return set()
        result = self._bulk(
            "insert_crossings",
            "signal_crossings",
            _CROSSING_COLUMNS,
            "ON CONFLICT (account_id, threshold_key, period_start) DO NOTHING RETURNING id",
            rows,
        )
        return set(result.scalars())

    def crossings_of(self, account_id: str, limit: int) -> list[CrossingRow]:
        return list(
            self.session.scalars(
                select(CrossingRow)
                .where(CrossingRow.account_id == account_id)
                .order_by(CrossingRow.recorded_at.desc(), CrossingRow.threshold_key)
                .limit(limit)
            )
        )

    def page_bounds(self, after_id: str, limit: int) -> tuple[int, str | None]:
        """How many accounts follow `after_id` (at most `limit`) in id order, and the last one."""
        page = (
            select(AccountRow.id)
            .where(AccountRow.id > after_id)
            .order_by(AccountRow.id)
            .limit(limit)
            .subquery()
        )
        count, last_id = self.session.execute(select(func.count(), func.max(page.c.id))).one()
        return count, last_id

    def plans_between(self, after_id: str, last_id: str) -> list[tuple[str, str]]:
        """The distinct (tier, add-ons as stored JSON text) of the accounts in (after, last]."""
        addons = cast(AccountRow.addons, Text)
        result = self.session.execute(
            select(AccountRow.tier, addons)
            .where(AccountRow.id > after_id, AccountRow.id <= last_id)
            .distinct()
        )
        return [(tier, text_) for tier, text_ in result]

    def counters_reaching(
        self,
        after_id: str,
        last_id: str,
        now: datetime,
        triggers: Sequence[tuple[str, str, str, int]],
        seat_percent: int | None,
    ) -> list[CounterReading]:
        """The current counters of the accounts in (after, last] that reach their trigger.

        `triggers` are (tier, add-ons JSON text, feature, at least); seats reach theirs at
        used × 100 >= seat_percent × purchased seats. The database compares, so only the
        counters worth a closer look travel back.
        """
        statement = _STATEMENTS.get((self.dialect.name, "counters_reaching"))
        if statement is None:
            statement = _STATEMENTS[(self.dialect.name, "counters_reaching")] = (
                self._counters_reaching_sql()
            )
        result = self.session.execute(
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
        return [CounterReading(*row) for row in result]

    def _counters_reaching_sql(self) -> TextClause:
        if self.postgres:
            triggers = (
                "SELECT e->>0 AS tier, e->>1 AS addons, e->>2 AS feature, "
                "CAST(e->>3 AS bigint) AS at_least "
                "FROM json_array_elements(CAST(:triggers AS json)) AS e"
            )
        else:
            triggers = (
                "SELECT json_extract(value, '$[0]') AS tier, json_extract(value, '$[1]') "
                "AS addons, json_extract(value, '$[2]') AS feature, "
                "json_extract(value, '$[3]') AS at_least FROM json_each(:triggers)"
            )
        # MATERIALIZED: take the triggers apart once, not once per joined counter.
        sql = f"""
            WITH t AS MATERIALIZED ({triggers})
            SELECT a.id, a.tier, a.interval, a.seats, CAST(a.addons AS text),
                a.current_period_start, a.current_period_end,
                c.feature, c.period_start, c.period_end, c.used
            FROM accounts AS a
            JOIN usage_counters AS c ON c.account_id = a.id
            LEFT JOIN t
                ON t.tier = a.tier AND t.addons = CAST(a.addons AS text) AND t.feature = c.feature
            WHERE a.id > :after AND a.id <= :last
                -- said of the counters too, so their primary key is range-scanned, not all
                AND c.account_id > :after AND c.account_id <= :last
                AND (c.period_end IS NULL OR (c.period_start <= :now AND c.period_end > :now))
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


class OutboxRepository(_Repository):
    """The signal outbox and its deliveries: fan out, claim with a lease, log each attempt."""

    def enqueue(self, rows: Sequence[Sequence[Any]]) -> None:
        """Rows are (signal_id, created_at)."""
        if rows:
            self._bulk("enqueue", "signal_outbox", _OUTBOX_COLUMNS, "", rows)

    def fan_out(self, endpoints: Sequence[str], now: datetime, limit: int) -> int:
        """Give the signals nobody has fanned out yet one pending delivery per endpoint."""
        statement = (
            select(SignalOutboxRow.id)
            .where(SignalOutboxRow.fanned_out_at.is_(None))
            .order_by(SignalOutboxRow.id)
            .limit(limit)
        )
        if self.locks_rows:
            statement = statement.with_for_update(skip_locked=True)
        outbox_ids = list(self.session.scalars(statement))
        if not outbox_ids:
            return 0
        self.session.execute(
            self._insert(SignalDeliveryRow).on_conflict_do_nothing(),
            [
                {
                    "outbox_id": outbox_id,
                    "endpoint": endpoint,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "delivered_at": None,
                    "last_error": None,
                    "created_at": now,
                }
                for outbox_id in outbox_ids
                for endpoint in endpoints
            ],
        )
        self.session.execute(
            update(SignalOutboxRow)
            .where(SignalOutboxRow.id.in_(outbox_ids))
            .values(fanned_out_at=now)
        )
        return len(outbox_ids)

    def claim_due(
        self, endpoints: Sequence[str], now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[int, str, int, CrossingRow]]:
        """Lease due deliveries: (delivery id, endpoint, attempt number, the signal).

        The lease moves next_attempt_at forward, so a worker that dies mid-flight leaves the
        delivery due again later: at-least-once, never lost.
        """
        statement = (
            select(
                SignalDeliveryRow.id,
                SignalDeliveryRow.endpoint,
                SignalDeliveryRow.attempts,
                CrossingRow,
            )
            .join(SignalOutboxRow, SignalOutboxRow.id == SignalDeliveryRow.outbox_id)
            .join(CrossingRow, CrossingRow.id == SignalOutboxRow.signal_id)
            .where(SignalDeliveryRow.next_attempt_at <= now)
            .where(SignalDeliveryRow.endpoint.in_(endpoints))
            .order_by(SignalDeliveryRow.next_attempt_at, SignalDeliveryRow.id)
            .limit(limit)
        )
        if self.locks_rows:
            statement = statement.with_for_update(skip_locked=True, of=SignalDeliveryRow)
        claimed = self.session.execute(statement).all()
        if not claimed:
            return []
        self.session.execute(
            update(SignalDeliveryRow)
            .where(SignalDeliveryRow.id.in_([row[0] for row in claimed]))
            .values(next_attempt_at=lease_until, attempts=SignalDeliveryRow.attempts + 1)
        )
        return [(d, e, attempts + 1, crossing) for d, e, attempts, crossing in claimed]

    def record_attempt(
        self,
        delivery_id: int,
        attempt: int,
        *,
        at: datetime,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        retry_at: datetime | None,
    ) -> None:
        """Log the attempt; delivered when retry_at is None, else due again at retry_at."""
        self.session.add(
            SignalDeliveryAttemptRow(
                delivery_id=delivery_id,
                attempt=attempt,
                attempted_at=at,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
            )
        )
        values: dict[str, Any] = (
            {"next_attempt_at": None, "delivered_at": at, "last_error": None}
            if retry_at is None
            else {"next_attempt_at": retry_at, "last_error": error}
        )
        # Only the holder of this attempt's lease may settle it: a late answer from a worker
        # whose lease expired (and was retried) must not overwrite the newer attempt's state.
        self.session.execute(
            update(SignalDeliveryRow)
            .where(SignalDeliveryRow.id == delivery_id)
            .where(SignalDeliveryRow.attempts == attempt)
            .where(SignalDeliveryRow.delivered_at.is_(None))
            .values(**values)
        )
        self.session.flush()

    def pending_count(self) -> int:
        unfanned = self.session.scalar(
            select(func.count())
            .select_from(SignalOutboxRow)
            .where(SignalOutboxRow.fanned_out_at.is_(None))
        )
        undelivered = self.session.scalar(
            select(func.count())
            .select_from(SignalDeliveryRow)
            .where(SignalDeliveryRow.delivered_at.is_(None))
        )
        return (unfanned or 0) + (undelivered or 0)
