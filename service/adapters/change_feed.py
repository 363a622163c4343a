"""Which accounts a transaction changed, told to every process on the database when it commits.

Each process caches account offer plans (services.offer_cache). A transaction that changes
what an account is offered marks the account (`mark_changed`); the request plumbing drops it
from its own process's cache. On PostgreSQL the same transaction also sends the ids with
`pg_notify` just before it commits: PostgreSQL delivers a notification only if, and when, the
transaction commits, to every session listening on the channel. Each replica's
`ChangeListener` listens and drops the ids from its cache, so a change committed by any process
(request, CLI, worker, webhook) is seen by every replica's next page load. A listener that loses
its connection may have missed notifications: when it connects again it drops the whole cache.
SQLite has no such channel; there the service runs as one process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import psycopg
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.offer_pages import bump_offer_pages

log = logging.getLogger("upshift.changes")

CHANNEL = "upshift_account_changes"
_CHANGED = "upshift.changed_accounts"
# A notification's payload must stay under 8,000 bytes; account ids are at most 64 characters.
_IDS_PER_NOTIFY = 100


def mark_changed(session: Session, account_id: str) -> None:
    """Note that this transaction changed what offers the account gets: once it commits, every
    process drops the account from its offer cache."""
    session.info.setdefault(_CHANGED, set()).add(account_id)


def changed_accounts(session: Session) -> set[str]:
    """The accounts marked in this session (and forgets them)."""
    return session.info.pop(_CHANGED, set())


def notify_changes_on_commit(factory: sessionmaker[Session]) -> None:
    """On PostgreSQL, every transaction of `factory`'s sessions sends the accounts it marked
    to CHANNEL as its last statement before COMMIT."""
    event.listen(factory, "before_commit", _notify_marked)


def _notify_marked(session: Session) -> None:
    marked = session.info.get(_CHANGED)
    if not marked or session.get_bind().dialect.name != "postgresql":
        return
    ids = sorted(marked)
    # The offers read model shared by the replicas drops the accounts' pages in this same
    # transaction: committed together with the change, or not at all.
    bump_offer_pages(session, ids)
    for start in range(0, len(ids), _IDS_PER_NOTIFY):
        payload = ",".join(ids[start : start + _IDS_PER_NOTIFY])
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
        )


def listen_dsn(engine: Engine) -> str:
    """The libpq connection string of the engine's database (psycopg, not SQLAlchemy)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class ChangeListener:
    """A daemon thread that LISTENs on `channel` (CHANNEL: changed accounts) and calls
    `on_change` with the payload's comma-separated items, or `on_reset` after every
    (re)connection, when notifications may have been missed."""

    def __init__(
        self,
        dsn: str,
        on_change: Callable[[Iterable[str]], None],
        on_reset: Callable[[], None],
        *,
        poll_s: float = 0.5,
        retry_s: float = 1.0,
        channel: str = CHANNEL,
    ) -> None:
        self.dsn = dsn
        self.channel = channel
        self.on_change = on_change
        self.on_reset = on_reset
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.notifications = 0
        self.connections = 0
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)

    def start(self) -> ChangeListener:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                log.warning("change listener lost its connection (%s); reconnecting", exc)
            except Exception:
                log.exception("change listener failed; reconnecting")
            self.listening.clear()
            self._stop.wait(self.retry_s)

    def _listen(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute(f"LISTEN {self.channel}")
            self.connections += 1
            # Whatever was committed while no one listened is unknown: start from nothing.
            self.on_reset()
            self.listening.set()
            while not self._stop.is_set():
                for notification in connection.notifies(timeout=self.poll_s):
                    self.notifications += 1
                    self.on_change(notification.payload.split(","))
