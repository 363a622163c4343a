"""Offer impressions are written in batches by a background thread, off the request path.

An impression is analytics for the offer funnel, not money: batching them keeps the offer
endpoint free of a write and a commit per page load. A crash loses at most the last interval's
impressions; everything else is flushed at shutdown.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.offer_tables import OfferImpressionRow
from service.adapters.offer_view_repository import OfferViewRepository
from service.services.accounts import get_account

log = logging.getLogger("upshift.impressions")

# COPY lines sent per hold of the interpreter lock by the writer thread; one flush is one
# transaction, so a failure re-queues exactly the rows that were not written.
SLICE = 1_024
# The offer_impressions columns in COPY order; three vary per impression, the rest per offer.
COLUMNS = (
    "offer_id",
    "account_id",
    "engine",
    "target",
    "amount_due_minor",
    "currency",
    "reason_codes",
    "signal_ids",
    "days_since_activation",
    "in_activation_window",
    "catalog_version",
    "shown_at",
)
JSON_COLUMNS = frozenset({"target", "reason_codes", "signal_ids"})
_MIDDLE = COLUMNS[1:4]  # between offer_id and amount_due_minor
_TAIL = COLUMNS[5:11]  # between amount_due_minor and shown_at


def _copy_text(value: Any) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    text = value if isinstance(value, str) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


@dataclass(frozen=True, slots=True)
class ImpressionStatic:
    """The columns of an offer's impressions that do not vary from one page load to the next,
    also encoded once as COPY text, so that queueing and writing an impression cost little:
    the writer thread shares the interpreter with the request path."""

    columns: Mapping[str, Any]  # JSON columns as Python values
    copy_middle: str
    copy_tail: str

    @classmethod
    def of(cls, columns: Mapping[str, Any]) -> ImpressionStatic:
        encoded = {c: json.dumps(v) if c in JSON_COLUMNS else v for c, v in columns.items()}
        return cls(
            columns=dict(columns),
            copy_middle="\t".join(_copy_text(encoded[c]) for c in _MIDDLE),
            copy_tail="\t".join(_copy_text(encoded[c]) for c in _TAIL),
        )


class Impression(NamedTuple):
    static: ImpressionStatic
    offer_id: str
    amount_due_minor: int | None
    shown_at: datetime

    def copy_line(self, shown_at: str) -> str:
        """The row in COPY text; `shown_at` is this row's shown_at as text (the offers of one
        page load share their moment, so it is formatted once for them)."""
        amount = "\\N" if self.amount_due_minor is None else str(self.amount_due_minor)
        return (
            f"{_copy_text(self.offer_id)}\t{self.static.copy_middle}\t{amount}\t"
            f"{self.static.copy_tail}\t{shown_at}\n"
        )

    def row(self) -> dict[str, Any]:
        return {
            **self.static.columns,
            "offer_id": self.offer_id,
            "amount_due_minor": self.amount_due_minor,
            "shown_at": self.shown_at,
        }


def _hand_over_interpreter() -> None:
    """Let the request path run between two slices of a flush (sleep releases the lock)."""
    time.sleep(0)


class ImpressionBuffer:
    """Impressions queued by the request path, written by a thread every `interval_s`.

    On PostgreSQL each impression is queued as its COPY text line, formatted on the request
    path: a string is invisible to the cyclic garbage collector, where 10,000 queued tuples
    were part of every collection under load (and of its pauses), and the writer thread only
    joins the lines. Elsewhere the rows are queued as they are and inserted.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        interval_s: float = 1.0,
        max_pending: int = 100_000,
    ) -> None:
        self.factory = factory
        self.interval_s = interval_s
        self.max_pending = max_pending
        bind = factory.kw.get("bind")
        self.copy_lines = bind is not None and bind.dialect.name == "postgresql"
        self._pending: list[Impression] | list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, rows: list[Impression]) -> None:
        if not rows:
            return
        queued: list[Impression] | list[str] = rows
        if self.copy_lines:
            stamps: dict[datetime, str] = {}
            lines = []
            for row in rows:
                shown_at = stamps.get(row.shown_at)
                if shown_at is None:
                    shown_at = stamps[row.shown_at] = row.shown_at.isoformat()
                lines.append(row.copy_line(shown_at))
            queued = lines
        with self._lock:
            if len(self._pending) + len(queued) > self.max_pending:
                log.warning("impression buffer full: dropping %d impressions", len(queued))
                return
            self._pending.extend(queued)  # type: ignore[arg-type]  # one kind per buffer

    def flush(self) -> int:
        """Write everything pending now, in one transaction; returns how many rows."""
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return 0
        try:
            self._write(rows)
        except Exception:
            log.exception("writing %d impressions failed; they will be retried", len(rows))
            with self._lock:
                self._pending[:0] = rows
            raise
        return len(rows)

    def _write(self, rows: list[Impression] | list[str]) -> None:
        # PostgreSQL gets COPY of the queued lines: a fraction of the CPU per row of an INSERT,
        # and of the time this thread holds the interpreter lock.
        with self.factory() as session, session.begin():
            connection = session.connection()
            if not self.copy_lines:
                impressions = cast(list[Impression], rows)  # one kind per buffer
                connection.execute(
                    insert(OfferImpressionRow.__table__), [row.row() for row in impressions]
                )
                return
            cursor = connection.connection.driver_connection.cursor()
            with cursor.copy(f"COPY offer_impressions ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                lines = cast(list[str], rows)
                for start in range(0, len(lines), SLICE):
                    copy.write("".join(lines[start : start + SLICE]).encode())
                    # A whole flush at once held the lock for ms at 4,000 page loads/s.
                    _hand_over_interpreter()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="impressions", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with contextlib.suppress(Exception):  # logged in flush; shutting down anyway
            self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):  # logged in flush; the rows stay pending
                self.flush()


def record_offer_seen(session: Session, account_id: str, offer_id: str, now: datetime) -> datetime:
    """The funnel's "seen": the frontend displayed this offer to the account's customer. Once per
    offer id (the first report's moment is kept); returns that moment. The account must exist."""
    get_account(session, account_id)
    return OfferViewRepository(session).record(account_id, offer_id, now)
