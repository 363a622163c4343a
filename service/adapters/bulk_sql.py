"""Set-based SQL plumbing of the usage and signal repositories: many rows as one JSON parameter."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    Executable,
    Insert,
    String,
    TextClause,
    text,
)
from sqlalchemy import column as sa_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from service.adapters.orm import UTCDateTime

# A bulk statement's columns: (name, kind), where the kind says how the database reads the
# value back out of the JSON row.
Columns = Sequence[tuple[str, str]]


# Column kinds and the PostgreSQL expression that reads each from a JSON row `e`: jsonb, which
# is parsed once, where each `->>` of a json value parses its row again (6× slower at 17
# columns). Times travel as integer microseconds since the epoch: exact, no text to parse.
def _pg_time(microseconds: str) -> str:
    return f"(TIMESTAMPTZ 'epoch' + CAST({microseconds} AS bigint) * INTERVAL '1 microsecond')"


_PG_CASTS = {
    "text": "e->>{i}",
    "int": "CAST(e->>{i} AS bigint)",
    "time": _pg_time("e->>{i}"),
    "json": "CAST(e->{i} AS json)",
    "bool": "CAST(e->>{i} AS boolean)",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_STATEMENTS: dict[tuple[str, str], TextClause] = {}


def _microseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def dialect_insert(dialect: Dialect, table: Any) -> Insert:
    """An INSERT with on_conflict_do_nothing/update: ON CONFLICT is spelled the same on both
    backends, but lives in each dialect's insert()."""
    if dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class BulkSqlRepository:
    """Base of the repositories whose statements take many rows at once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect
        self.postgres = self.dialect.name == "postgresql"

    def _execute(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> Any:
        """Run a statement on the session's connection, in its transaction: Core rows, without
        the ORM's per-row loading (these statements select columns, not entities)."""
        return self.session.connection().execute(statement, parameters)

    def _insert(self, table: Any) -> Insert:
        return dialect_insert(self.dialect, table)

    @property
    def locks_rows(self) -> bool:
        # SQLite has no row locks: BEGIN IMMEDIATE (see adapters.db) serializes writers instead.
        return self.postgres

    def _bulk(
        self, name: str, table: str, columns: Columns, tail: str, rows: Sequence[Sequence[Any]]
    ) -> Any:
        """INSERT many rows passed as ONE JSON parameter, with SQL that never varies:
        json_array_elements() on PostgreSQL, json_each() on SQLite.

        A multi-row VALUES list has a parameter per value (new SQL for every batch size, parsed
        again each time), and psycopg dumps array parameters element by element in Python;
        one orjson.dumps is a single C call, and both databases take JSON apart in C.
        """
        statement = self._statement(name, lambda: self._bulk_sql(table, columns, tail))
        return self._execute(statement, {"rows": self._encode(columns, rows)})

    def _encode(self, columns: Columns, rows: Sequence[Sequence[Any]]) -> str:
        """The rows as one JSON array, times in the encoding the statements read back."""
        times = [i for i, (_, kind) in enumerate(columns) if kind == "time"]
        if not times or not rows:
            return orjson.dumps(rows).decode()
        encode_time = self._time_encoder()
        # Column by column: batches repeat a few moments (now, period starts) in every row,
        # and each distinct one is encoded once.
        encoded: dict[datetime | None, Any] = {None: None}
        by_column = list(zip(*rows, strict=True))
        for i in times:
            column = by_column[i]
            for moment in set(column).difference(encoded):
                encoded[moment] = encode_time(moment)
            by_column[i] = tuple([encoded[moment] for moment in column])
        return orjson.dumps(list(zip(*by_column, strict=True))).decode()

    def _encode_values(self, values: Collection[Any], kind: str = "text") -> str:
        """Values for _values_source, as one JSON array."""
        if kind == "time":
            encode_time = self._time_encoder()
            values = [encode_time(moment) for moment in values]
        return orjson.dumps(list(values)).decode()

    def _values_source(self, parameter: str, kind: str = "text") -> str:
        """A SELECT of the values (texts or times) in `:parameter`, a JSON array from
        _encode_values, for `column IN (…)` with one parameter and SQL that never varies."""
        if not self.postgres:
            return f"SELECT value FROM json_each(:{parameter})"
        value = _pg_time("v") if kind == "time" else "v"
        return f"SELECT {value} FROM jsonb_array_elements_text(CAST(:{parameter} AS jsonb)) AS v"

    def _in_values(self, column: Any, values: Collection[Any], name: str = "ids") -> Any:
        """`column IN (values)` with the values as one JSON parameter (_values_source): the
        statement's text is the same for any number of values, so the driver parses it once
        rather than a thousand placeholders every time."""
        source = (
            text(self._values_source(name))
            .bindparams(**{name: self._encode_values(values)})
            .columns(sa_column("value", String))
        )
        return column.in_(source)

    def _time_encoder(self) -> Callable[[datetime], Any]:
        if self.postgres:
            return _microseconds
        # SQLite stores times as text: encode them exactly as the UTCDateTime column does.
        processor = UTCDateTime().dialect_impl(self.dialect).bind_processor(self.dialect)
        assert processor is not None
        return processor

    def encode_time(self, moment: datetime) -> Any:
        """One time as the bulk statements encode it (to match values they return)."""
        return self._time_encoder()(moment)

    def _statement(self, name: str, build: Callable[[], TextClause]) -> TextClause:
        """The named statement of this dialect, built once per process."""
        key = (self.dialect.name, name)
        statement = _STATEMENTS.get(key)
        if statement is None:
            statement = _STATEMENTS[key] = build()
        return statement

    def _rows_source(self, columns: Columns, parameter: str = "rows") -> str:
        """A SELECT of the JSON rows in `:parameter`, one output column per (name, kind)."""
        if self.postgres:
            picks = ", ".join(
                f"{_PG_CASTS[kind].format(i=i)} AS {name}" for i, (name, kind) in enumerate(columns)
            )
            return f"SELECT {picks} FROM jsonb_array_elements(CAST(:{parameter} AS jsonb)) AS e"
        picks = ", ".join(
            f"json_extract(value, '$[{i}]') AS {name}" for i, (name, _) in enumerate(columns)
        )
        # WHERE true: SQLite needs it to parse an upsert whose rows come from a SELECT.
        return f"SELECT {picks} FROM json_each(:{parameter}) WHERE true"

    def _bulk_sql(self, table: str, columns: Columns, tail: str) -> TextClause:
        names = ", ".join(column for column, _ in columns)
        return text(f"INSERT INTO {table} ({names}) {self._rows_source(columns)} {tail}")

    def _encoded_time_sql(self, column: str) -> str:
        """SQL returning a time column in the encoding the bulk statements send times in."""
        if self.postgres:
            return f"CAST(round(EXTRACT(EPOCH FROM {column}) * 1000000) AS bigint)"
        return column
