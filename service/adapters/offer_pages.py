"""The offers read model's rows (adapters.offer_tables.OfferPageRow): bumped by every change to
an account in the changing transaction, read by a page load in one statement, stored only with
the stamp the page was read at. PostgreSQL only: on SQLite the service is one process and its
in-process cache is the whole story (api.page_store)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

# Every change: the page goes, the stamp moves on (a row is made for an account that had none,
# so that a page read before this change and stored after it finds a stamp it did not read).
_BUMP = text(
    """
    INSERT INTO offer_pages (account_id, stamp)
    SELECT id, 1 FROM unnest(CAST(:ids AS text[])) AS changed(id)
    ON CONFLICT (account_id) DO UPDATE
    SET stamp = offer_pages.stamp + 1, page = NULL, build = NULL, valid_until = NULL,
        stored_at = NULL
    """
)
_FETCH = (
    "SELECT page, build FROM offer_pages "
    "WHERE account_id = %s AND page IS NOT NULL AND valid_until > %s"
)
# A page read when the account had no row: stored unless a change made one meanwhile.
_STORE_FIRST = text(
    """
    INSERT INTO offer_pages (account_id, stamp, page, build, valid_until, stored_at)
    VALUES (:id, 0, :page, :build, :valid_until, :now)
    ON CONFLICT (account_id) DO NOTHING
    """
)
# A page read at `stamp`: stored unless a change moved the stamp on meanwhile.
_STORE = text(
    """
    UPDATE offer_pages SET page = :page, build = :build, valid_until = :valid_until,
        stored_at = :now
    WHERE account_id = :id AND stamp = :stamp
    """
)


def bump_offer_pages(session: Session | Connection, account_ids: Sequence[str]) -> None:
    """In the transaction that changed these accounts (ids sorted: concurrent bumps lock rows
    in one order)."""
    session.execute(_BUMP, {"ids": sorted(account_ids)})


class StoredPage(NamedTuple):
    page: bytes
    build: str


class PageReader:
    """Reads stored pages on the event loop: a page load that misses its process's cache waits
    on one statement without a worker thread (whose hand-offs cost more than the statement).

    A few psycopg AsyncConnections of its own, in autocommit, each lent for one statement (a
    prepared one) and opened when first needed. A connection that fails is closed and the read
    is tried once more on a new one; a read that still fails raises (psycopg.Error), and the
    caller builds the page instead.
    """

    def __init__(self, dsn: str, size: int = 4) -> None:
        self.dsn = dsn
        self.size = size
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._opened = 0
        self._returned: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def fetch(self, account_id: str, now: datetime) -> StoredPage | None:
        """The account's stored page that still holds at `now`, if any."""
        for attempt in (1, 2):
            connection = await self._borrow()
            try:
                cursor = await connection.execute(_FETCH, (account_id, now), prepare=True)
                row = await cursor.fetchone()
            except psycopg.Error:
                await self._discard(connection)
                if attempt == 2:
                    raise
                continue
            except BaseException:  # cancelled mid-statement: the connection's state is unknown
                await self._discard(connection)
                raise
            await self._give_back(connection)
            return None if row is None else StoredPage(bytes(row[0]), row[1])
        raise AssertionError("unreachable")

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        if self._loop is not asyncio.get_running_loop():
            return  # opened on another loop, gone: nothing to close from here
        for connection in idle:
            with contextlib.suppress(psycopg.Error):
                await connection.close()

    async def _borrow(self) -> psycopg.AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._returned is None:
            # Connections belong to the loop they were opened on: another loop (a test
            # client's per-request loop) starts afresh.
            self._loop, self._idle, self._opened = loop, [], 0
            self._returned = asyncio.Condition()
        async with self._returned:
            while not self._idle and self._opened >= self.size:
                await self._returned.wait()
            if self._idle:
                return self._idle.pop()
            self._opened += 1
        try:
            return await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        except BaseException:
            await self._discard(None)
            raise

    async def _give_back(self, connection: psycopg.AsyncConnection[Any]) -> None:
        assert self._returned is not None
        async with self._returned:
            self._idle.append(connection)
            self._returned.notify()

    async def _discard(self, connection: psycopg.AsyncConnection[Any] | None) -> None:
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                await connection.close()
        assert self._returned is not None
        async with self._returned:
            self._opened -= 1
            self._returned.notify()


def store_offer_page(
    connection: Connection,
    account_id: str,
    stamp: int | None,
    page: bytes,
    build: str,
    valid_until: datetime,
    now: datetime,
) -> bool:
    """Keep `page`, built from what was read when the account's stamp was `stamp` (None: no
    row yet); False when a change committed since (the page is then not kept)."""
    values = {
        "id": account_id,
        "page": page,
        "build": build,
        "valid_until": valid_until,
        "now": now,
    }
    if stamp is None:
        result = connection.execute(_STORE_FIRST, values)
    else:
        result = connection.execute(_STORE, {**values, "stamp": stamp})
    return result.rowcount == 1
