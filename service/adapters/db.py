"""Engine, sessions and migrations for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from service.adapters.change_feed import notify_changes_on_commit

T = TypeVar("T")


def migrations_dir() -> Path:
    """The Alembic scripts: beside the package in a checkout, else in the working directory."""
    beside_package = Path(__file__).resolve().parents[2] / "migrations"
    return beside_package if beside_package.is_dir() else Path.cwd() / "migrations"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings each backend needs to be correct under concurrency."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN handling defers locks; take the write lock at BEGIN instead, so
        # read-modify-write transactions serialize rather than fail with "database is locked".
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see make_engine)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose commits tell every process which accounts they changed (change_feed)."""
    factory = sessionmaker(engine, expire_on_commit=False, autoflush=False)
    notify_changes_on_commit(factory)
    return factory


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


@contextmanager
def statement_reads(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads that need no transaction around them (the cache-miss paths).

    On PostgreSQL under READ COMMITTED each statement reads its own snapshot whether or not a
    transaction surrounds it, so BEGIN and COMMIT would only add two round trips: the session
    runs on a connection in autocommit. Elsewhere (SQLite) it is an ordinary transaction.
    """
    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        with transaction(factory) as session:
            yield session
        return
    with engine.connect() as connection:
        autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
        with factory(bind=autocommit) as session:
            yield session


def statement_read(factory: sessionmaker[Session], read: Callable[[Session], T]) -> T:
    """`read(session)` as in statement_reads, on a connection lent by `connection_read`."""

    def in_session(connection: Connection) -> T:
        with factory(bind=connection) as session:
            return read(session)

    return connection_read(factory, in_session)


def connection_read(factory: sessionmaker[Session], read: Callable[[Connection], T]) -> T:
    """`read(connection)` as in statement_reads, in as many round trips as it has statements:
    on PostgreSQL the connection comes from a pool of its own, in autocommit from the start,
    that does not ping a connection before lending it (the engine's pool_pre_ping costs a round
    trip of its own). A connection the server dropped meanwhile fails the first statement
    instead, which invalidates the pool (SQLAlchemy's disconnect handling), and the read runs
    once more on a fresh connection. `read` must only read: it may run twice."""
    return _autocommit(factory, read)


def statement_write(factory: sessionmaker[Session], write: Callable[[Connection], T]) -> T:
    """`write(connection)` on a connection lent as by `connection_read`: each statement commits
    on its own. `write` must be one idempotent statement: it may run twice."""
    return _autocommit(factory, write)


def _autocommit(factory: sessionmaker[Session], run: Callable[[Connection], T]) -> T:
    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        with engine.begin() as connection:  # SQLite: a transaction, as statement_reads'
            return run(connection)
    readers = statement_read_engine(engine)
    for attempt in (1, 2):
        try:
            with readers.connect() as connection:
                return run(connection)
        except DBAPIError as error:
            if attempt == 2 or not error.connection_invalidated:
                raise
    raise AssertionError("unreachable")


_READ_ENGINES: WeakKeyDictionary[Engine, Engine] = WeakKeyDictionary()
_READ_ENGINES_LOCK = threading.Lock()


def statement_read_engine(engine: Engine) -> Engine:
    """The engine's twin for connection_read: the same database, a pool without pre-ping whose
    connections are in autocommit (each statement its own snapshot, as statement_reads').

    It keeps as many connections as the engine may open (its pool size plus overflow) and
    opens no overflow: a miss borrows one for a single statement, and an overflow connection
    would be opened and closed around it (a new PostgreSQL backend per miss under load)."""
    with _READ_ENGINES_LOCK:
        twin = _READ_ENGINES.get(engine)
        if twin is None:
            pool = engine.pool
            size = pool.size() if isinstance(pool, QueuePool) else 10
            overflow = max(getattr(pool, "_max_overflow", 0), 0)
            twin = _READ_ENGINES[engine] = make_engine(
                engine.url.render_as_string(hide_password=False),
                pool_pre_ping=False,
                isolation_level="AUTOCOMMIT",
                pool_size=size + overflow,
                max_overflow=0,
            )
        return twin


def missing_database(url: str) -> str | None:
    """Why `url` names no usable database yet (an SQLite file that does not exist), else None.
    Commands other than serve and migrate check it first, so that they create nothing."""
    if not url.startswith("sqlite"):
        return None
    database = url.split("///", 1)[-1]
    if not database or database == ":memory:" or Path(database).exists():
        return None
    return (
        f"no database at {Path(database).resolve()}: run this from the directory where "
        "`upshift serve` runs (or set UPSHIFT_DATABASE_URL); `upshift migrate` creates it"
    )


def is_migrated(engine: Engine) -> bool:
    """Whether the schema is at the latest revision (Alembic's head)."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads()) == heads


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision` with Alembic, on the engine's own connection."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
