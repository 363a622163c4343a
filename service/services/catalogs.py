"""The catalog versions a process serves, and the one in force for new business right now.

Every process reads the same versions (the files at the catalog path, plus any published into the
database: see `upshift catalog publish`), so every replica prices new business at the same version
at the same instant: the switch is each version's `effective_from`, not the moment a process
happened to load it. A version published while the service runs is loaded by each replica's
`CatalogWatcher` (told by a notification on PostgreSQL, and polling as a safety net), long enough
before its `effective_from` that no replica can be late: publishing refuses a version that would
take effect sooner than the propagation window from now, unless forced
(services.catalog_publishing).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.catalog_loader import (
    catalog_from_document,
    document_sha256,
    same_document,
    with_published,
)
from service.adapters.catalog_store import (
    StoredVersion,
    has_catalog_table,
    stored_fingerprints,
    stored_versions,
)
from service.adapters.db import statement_reads
from service.domain.catalog import (
    Catalog,
    CatalogError,
    CatalogHistory,
    CatalogIssue,
    load_each,
)
from service.ports import Clock

log = logging.getLogger("upshift.catalog")


class ServedCatalogs:
    """The process's catalog history; `in_force()` is what new business is priced at. `history`
    is swapped whole (never edited), so a request reads one consistent set of versions."""

    def __init__(self, history: CatalogHistory, clock: Clock) -> None:
        self._history = history
        self.clock = clock
        self._lock = threading.Lock()

    @property
    def history(self) -> CatalogHistory:
        return self._history

    def in_force(self, at: datetime | None = None) -> Catalog:
        return self._history.in_force(self.clock.now() if at is None else at)

    def replace(self, history: CatalogHistory) -> bool:
        """Serve `history` from now on; False (and no change) when it holds the same versions."""
        with self._lock:
            if history.names == self._history.names:
                return False
            self._history = history
            return True


def stored_catalogs(rows: list[StoredVersion]) -> list[tuple[str, Catalog]]:
    """Each stored row validated again, with its label; CatalogError names every bad one."""
    return load_each((row.label, partial(stored_catalog, row)) for row in rows)


def stored_catalog(row: StoredVersion) -> Catalog:
    catalog = catalog_from_document(row.document, row.label)
    if catalog.version != row.version or document_sha256(row.document) != row.sha256:
        raise CatalogError(
            [CatalogIssue("(document)", "the stored document is not the one published")],
            row.label,
        )
    return catalog


def served_history(files: CatalogHistory, session: Session) -> CatalogHistory:
    """The files' versions and every published one, checked together (CatalogError)."""
    return with_published(files, stored_catalogs(stored_versions(session)))


# --- loading published versions while the service runs -------------------------------------


class CatalogWatcher:
    """Loads the versions published into the database into the process's ServedCatalogs: at
    start (`load_at_start`), then on each notification (`wake`) and every `poll_s` seconds as a
    safety net, in a daemon thread; `run_once` is one such look.

    A version it cannot serve (invalid, or in conflict with the versions served) is logged and
    left out: the history served before keeps serving. `on_swap` runs after each swap (drop the
    caches, teach Stripe the new lookup keys); `on_switch` when the version in force changes
    (at an effective_from), so cached offers priced at the previous version are dropped.
    """

    def __init__(
        self,
        served: ServedCatalogs,
        factory: sessionmaker[Session],
        poll_s: float,
        *,
        on_swap: Callable[[CatalogHistory], None] = lambda _history: None,
        on_switch: Callable[[Catalog], None] = lambda _catalog: None,
    ) -> None:
        self.served = served
        self.factory = factory
        self.poll_s = poll_s
        self.on_swap = on_swap
        self.on_switch = on_switch
        self.refused: dict[str, str] = {}  # version -> why it is not served
        self.checked_at: float | None = None  # wall time of the last look that read the table
        self._files = served.history  # the versions at the catalog path (served holds no other)
        self._seen: dict[str, str] = {}  # version -> sha256 of every stored version dealt with
        self._published: dict[str, tuple[str, Catalog]] = {}  # served: version -> label, catalog
        self._in_force = served.in_force().version
        self._looking = threading.Lock()  # one look at a time (the thread's, or a caller's)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load_at_start(self) -> None:
        """Serve every published version too; CatalogError when one cannot be served (the
        service refuses to start, as with a bad file). A database not migrated yet or out of
        reach is left to the first look of the thread."""
        engine: Engine = self.factory.kw["bind"]
        try:
            if not has_catalog_table(engine):
                log.info("no catalog_versions table yet: serving the files at the catalog path")
                return
            with statement_reads(self.factory) as session:
                rows = stored_versions(session)
        except SQLAlchemyError as exc:
            log.warning("published catalog versions not read at start (%s); retrying", exc)
            return
        published = stored_catalogs(rows)
        history = with_published(self._files, published)
        self._seen = {row.version: row.sha256 for row in rows}
        self._published = {catalog.version: (label, catalog) for label, catalog in published}
        self.served.replace(history)
        self._in_force = self.served.in_force().version
        self.checked_at = time.time()

    def run_once(self) -> bool:
        """Load whatever was published (or withdrawn) since the last look; True when the
        history served changed. Database errors are raised (the thread logs them and tries
        again); a switch of the version in force is noticed all the same."""
        with self._looking:
            try:
                with statement_reads(self.factory) as session:
                    fingerprints = stored_fingerprints(session)
                    new = [v for v, sha in fingerprints.items() if self._seen.get(v) != sha]
                    rows = stored_versions(session, new) if new else []
                self.checked_at = time.time()
                withdrawn = [v for v in self._seen if v not in fingerprints]
                return self._load(withdrawn, rows) if rows or withdrawn else False
            finally:
                self._notice_switch()

    def _notice_switch(self) -> None:
        in_force = self.served.in_force()
        if in_force.version != self._in_force:
            log.info("catalog version %s is in force from now", in_force.version)
            self._in_force = in_force.version
            self.on_switch(in_force)

    def _load(self, withdrawn: list[str], rows: list[StoredVersion]) -> bool:
        history = self.served.history
        if withdrawn:
            log.info("catalog versions withdrawn: %s", ", ".join(withdrawn))
            for version in withdrawn:
                self._seen.pop(version, None)
                self.refused.pop(version, None)
                self._published.pop(version, None)
            # Fewer versions than served, each checked with the others before: no conflict.
            history = with_published(self._files, list(self._published.values()))
        for row in sorted(rows, key=lambda r: r.effective_from):
            self._seen[row.version] = row.sha256
            try:
                catalog = stored_catalog(row)
                if row.version in history.names:
                    if not same_document(history.version(row.version), catalog):
                        raise CatalogError(
                            [
                                CatalogIssue(
                                    "version",
                                    "differs from the version of that name already served; "
                                    "a version is immutable",
                                )
                            ],
                            row.label,
                        )
                else:
                    history = history.with_version(catalog, row.label)
                self._published[row.version] = (row.label, catalog)
            except CatalogError as exc:
                self.refused[row.version] = str(exc)
                log.error(
                    "catalog version %s cannot be served; still serving %s:\n%s",
                    row.version,
                    ", ".join(history.names),
                    exc,
                )
        if not self.served.replace(history):
            return False
        log.info("serving catalog versions %s", ", ".join(history.names))
        self.on_swap(history)
        return True

    # -- the thread ------------------------------------------------------------------------

    def start(self) -> CatalogWatcher:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="upshift-catalogs", daemon=True)
        self._thread.start()
        return self

    def wake(self, *_: object) -> None:
        """Look now (a notification arrived, or the listener reconnected)."""
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_once()
            except SQLAlchemyError as exc:
                log.warning("catalog watcher could not read published versions: %s", exc)
            except Exception:
                log.exception("catalog watcher failed; trying again at the next poll")
