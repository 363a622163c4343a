"""The offers read model shared by every replica: each account's offer page as last built, kept
in PostgreSQL while nothing changed the account (adapters.offer_pages).

Replicas behind a load balancer each see an account for the first time often: most page loads
are for accounts not seen in the last 30 s, and with N workers a worker has seen 1/N of those.
Building a page (the account's inputs read, its candidates ranked, each change prepared and its
JSON cut) costs far more than answering from one. So the first process to build a page stores
it, and any other process's miss reads it back in one statement by primary key.

It is coherent by construction, not by expiry. Every transaction that changes what an account
is offered (the same ones that tell the other replicas' in-process caches: `mark_changed`) also
clears the stored page and moves the account's `stamp` on, in that transaction. The inputs of a
page are read in one statement together with the stamp, and the page is stored only while the
stamp is still that one: a page read just before a change is never stored after it. A page is
also kept no longer than its inputs hold by time alone (OfferPlan.period_end: the period's end,
the next catalog version, a usage period's end, the next day since activation), and it is used
only by a process built the same way: the same service code and the same catalog versions
(`build`), else it is built again.

The page is pickled: the service's own objects, in their own shape, cheaper to read back than
anything rebuilt from a neutral format. A pickle may only ever be read from where the service
wrote it itself: each page is sealed with a MAC of a key derived from UPSHIFT_TOKEN_SECRET
(services.tokens.TokenSigner.seal), and unpickling takes only the classes a page is made of.
Nothing secret is stored: a page's token templates are pickled as a reference to "the signer",
which each process replaces with its own (TokenSigner refuses to be pickled).

SQLite runs one process: there the in-process cache is the whole story and nothing is stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import pickle
from collections.abc import Collection
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.catalog_loader import canonical_document, document_sha256
from service.adapters.db import statement_write
from service.adapters.offer_pages import PageReader, bump_offer_pages, store_offer_page
from service.api.offer_page import OffersPage
from service.domain.catalog import CatalogHistory
from service.services.catalogs import ServedCatalogs
from service.services.tokens import TokenSigner

log = logging.getLogger("upshift.offers")

_SIGNER = "token_signer"
# What a page is made of, besides the service's own classes.
_ALLOWED = {
    ("datetime", "datetime"),
    ("datetime", "timezone"),
    ("datetime", "timedelta"),
    ("operator", "itemgetter"),
}


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> str | None:
        return _SIGNER if isinstance(obj, TokenSigner) else None

    def reducer_override(self, obj: Any) -> Any:
        """A dataclass as its class called with its fields: read back by one call of the class
        (pickle's default for a dataclass with slots sets each field through a function that
        looks the fields up again for every object: most of a page's reading time)."""
        names = _init_fields(type(obj))
        if names is None:
            return NotImplemented
        return type(obj), tuple([getattr(obj, name) for name in names])


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _init_fields(cls: type) -> tuple[str, ...] | None:
    """The fields of a dataclass whose __init__ takes exactly its fields, in order; else None."""
    try:
        return _FIELDS[cls]
    except KeyError:
        pass
    names = None
    if dataclasses.is_dataclass(cls):
        fields = dataclasses.fields(cls)
        if all(field.init for field in fields):
            names = tuple(field.name for field in fields)
    _FIELDS[cls] = names
    return names


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, signer: TokenSigner) -> None:
        super().__init__(io.BytesIO(data))
        self.signer = signer

    def persistent_load(self, pid: Any) -> TokenSigner:
        if pid != _SIGNER:
            raise pickle.UnpicklingError(f"unknown reference {pid!r}")
        return self.signer

    def find_class(self, module: str, name: str) -> Any:
        found = _FOUND.get((module, name))
        if found is None:
            if not (module.startswith("service.") or (module, name) in _ALLOWED):
                raise pickle.UnpicklingError(f"{module}.{name} is not part of an offer page")
            found = _FOUND[module, name] = super().find_class(module, name)
        return found


_FOUND: dict[tuple[str, str], Any] = {}  # what find_class allowed and found, by name


@cache
def code_fingerprint() -> str:
    """The service's code, as the process runs it: a page is read back only by the same code."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class PageStore:
    """Stored offer pages, as one process reads and writes them (PostgreSQL only)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        signer: TokenSigner,
        catalogs: ServedCatalogs,
        reader: PageReader | None,
    ) -> None:
        self.factory = factory
        self.signer = signer
        self.catalogs = catalogs
        self.reader = reader  # None: nothing is stored (SQLite)
        self._built_for: tuple[CatalogHistory, str] | None = None
        if reader is not None:
            self.build()  # hashes the code once, at start-up rather than in a page load
        self.served = 0  # pages read back from the store
        self.stored = 0  # pages built here and kept
        self.refused = 0  # stored pages not usable here (another build, a broken seal)

    def build(self) -> str:
        """The service's code and catalog versions (their canonical documents) together."""
        history = self.catalogs.history
        built = self._built_for
        if built is not None and built[0] is history:
            return built[1]
        digest = hashlib.sha256(code_fingerprint().encode())
        for catalog in history.versions:
            digest.update(document_sha256(canonical_document(catalog)).encode())
        key = digest.hexdigest()
        self._built_for = (history, key)  # one assignment: a reader sees the old or the new
        return key

    async def load(self, account_id: str, now: datetime) -> OffersPage | None:
        """The account's stored page that holds at `now`, if this process can use it; None
        also when the store cannot be read (the page is then built: logged, not raised)."""
        if self.reader is None:
            return None
        try:
            stored = await self.reader.fetch(account_id, now)
        except psycopg.Error:
            log.exception("could not read the stored offer page of %s", account_id)
            return None
        if stored is None:
            return None
        data = self.signer.unseal(stored.page) if stored.build == self.build() else None
        if data is None:
            self.refused += 1
            return None
        try:
            page = _Unpickler(data, self.signer).load()
        except Exception:  # sealed by this build, yet unreadable: a bug, never a 500
            log.exception("the stored offer page of %s could not be read back", account_id)
            page = None
        if not isinstance(page, OffersPage) or page.plan.account.id != account_id:
            self.refused += 1
            return None
        self.served += 1
        return page

    def save(self, page: OffersPage, now: datetime) -> None:
        """Keep a page just built, unless the account changed since its inputs were read. A
        store that fails costs the next miss a build, nothing else: it is logged, not raised.
        It blocks on the database: a worker thread's work, as the build's."""
        if self.reader is None:
            return
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(page)
        sealed = self.signer.seal(buffer.getvalue())
        plan = page.plan
        try:
            kept = statement_write(
                self.factory,
                lambda connection: store_offer_page(
                    connection,
                    plan.account.id,
                    plan.page_stamp,
                    sealed,
                    self.build(),
                    page.period_end,
                    now,
                ),
            )
        except SQLAlchemyError:
            log.exception("could not store the offer page of %s", plan.account.id)
            return
        self.stored += kept

    def drop(self, account_ids: Collection[str]) -> None:
        """Drop the accounts' stored pages now, in a statement of its own (a change drops them
        in its own transaction: this is for a page found stale otherwise). Logged on failure."""
        if self.reader is None or not account_ids:
            return
        try:
            statement_write(
                self.factory, lambda connection: bump_offer_pages(connection, list(account_ids))
            )
        except SQLAlchemyError:
            log.exception("could not drop the stored offer pages of %s", sorted(account_ids))
