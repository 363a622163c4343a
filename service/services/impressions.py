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
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.offer_tables import OfferImpressionRow

log = logging.getLogger("upshift.impressions")

CHUNK = 200
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


def encode_json_columns(values: dict[str, Any]) -> dict[str, str]:
    """The JSON columns of a row as JSON text: rows are queued with them encoded once."""
    return {column: json.dumps(value) for column, value in values.items() if column in JSON_COLUMNS}


class ImpressionBuffer:
    """Rows are dicts of the COLUMNS, the JSON ones encoded (encode_json_columns)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        interval_s: float = 1.0,
        max_pending: int = 100_000,
    ) -> None:
        self.factory = factory
        self.interval_s = interval_s
        self.max_pending = max_pending
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self._lock:
            if len(self._pending) + len(rows) > self.max_pending:
                log.warning("impression buffer full: dropping %d impressions", len(rows))
                return
            self._pending.extend(rows)

    def flush(self) -> int:
        """Write everything pending now, in one transaction; returns how many rows."""
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return 0
        try:
            for start in range(0, len(rows), CHUNK):
                self._write(rows[start : start + CHUNK])
        except Exception:
            log.exception("writing %d impressions failed; they will be retried", len(rows))
            with self._lock:
                self._pending[:0] = rows
            raise
        return len(rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        # This thread shares the interpreter with the request path: PostgreSQL gets COPY (a
        # fraction of the CPU per row of an INSERT), and small chunks keep each hold of the GIL
        # short so that offer requests are not stalled behind a flush.
        with self.factory() as session, session.begin():
            connection = session.connection()
            if connection.dialect.name != "postgresql":
                decoded = [
                    {c: json.loads(v) if c in JSON_COLUMNS else v for c, v in row.items()}
                    for row in rows
                ]
                connection.execute(insert(OfferImpressionRow.__table__), decoded)
                return
            cursor = connection.connection.driver_connection.cursor()
            with cursor.copy(f"COPY offer_impressions ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[c] for c in COLUMNS])

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
