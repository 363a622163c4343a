"""The catalog versions a process serves, and the one in force for new business right now.

Every process reads the same versions (the files at the catalog path, plus any published into the
database: see `upshift catalog publish`), so every replica prices new business at the same version
at the same instant: the switch is each version's `effective_from`, not the moment a process
happened to load it. A version published while the service runs is loaded by each replica's
`CatalogWatcher` (told by a notification on PostgreSQL, and polling as a safety net), long enough
before its `effective_from` that no replica can be late: publishing refuses a version that would
take effect sooner than `publish_lead` from now, unless forced.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.catalog_loader import (
    canonical_document,
    catalog_from_document,
    document_sha256,
    same_document,
    with_published,
)
from service.adapters.catalog_store import (
    StoredVersion,
    has_catalog_table,
    insert_version,
    lock_for_publishing,
    stored_fingerprints,
    stored_versions,
)
from service.adapters.db import statement_reads, transaction
from service.domain.catalog import Catalog, CatalogError, CatalogHistory, CatalogIssue
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


def publish_lead(poll_s: float) -> timedelta:
    """How far ahead of its `effective_from` a version must be published: three polls of every
    replica's watcher (a notification is lost only with its connection, and two failed polls
    are still in time), and never under a minute (clocks of hosts differ a little)."""
    return max(timedelta(seconds=3 * poll_s), timedelta(minutes=1))


# --- publishing ------------------------------------------------------------------------------


class PublishRefused(Exception):
    """The catalog is valid, but publishing it now would break what is served (its timing)."""


@dataclass(frozen=True, slots=True)
class Publication:
    catalog: Catalog
    sha256: str
    stored: bool  # False: this very document was published before; nothing changed
    warning: str | None = None


def stored_catalogs(rows: list[StoredVersion]) -> list[tuple[str, Catalog]]:
    """Each stored row validated again, with its label; CatalogError names every bad one."""
    issues: list[CatalogIssue] = []
    loaded: list[tuple[str, Catalog]] = []
    for row in rows:
        try:
            loaded.append((row.label, stored_catalog(row)))
        except CatalogError as exc:
            issues += [CatalogIssue(f"{exc.source}: {i.path}", i.message) for i in exc.issues]
    if issues:
        raise CatalogError(issues)
    return loaded


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


def publish_catalog(
    factory: sessionmaker[Session],
    files: CatalogHistory,
    catalog: Catalog,
    source: str,
    now: datetime,
    *,
    lead: timedelta,
    force: bool = False,
) -> Publication:
    """Store `catalog` as a published version in one transaction, checked against every version
    served (the files and those published before), and notify the replicas on commit.

    The same document again is a no-op; another document under a stored version is refused
    (CatalogError: versions are immutable). A version taking effect in the past is refused (it
    would change which version was in force at instants already priced), and one taking effect
    within `lead` of `now` too (PublishRefused), unless `force`: then replicas may switch up to
    a poll apart.
    """
    document = canonical_document(catalog)
    sha = document_sha256(document)
    with transaction(factory) as session:
        lock_for_publishing(session)
        rows = stored_versions(session)
        stored = next((row for row in rows if row.version == catalog.version), None)
        if stored is not None:
            if stored.sha256 == sha:
                return Publication(catalog, sha, stored=False)
            raise CatalogError(
                [
                    CatalogIssue(
                        "version",
                        f"version '{catalog.version}' was published on "
                        f"{stored.published_at.isoformat()} from {stored.source} with another "
                        "document; a version is immutable (accounts are priced at it): publish "
                        "the change as a new version",
                    )
                ],
                source,
            )
        published = stored_catalogs(rows)
        history = with_published(files, published)
        if catalog.version in history.names:
            # A file at the catalog path: publishing the same document is allowed (replicas
            # whose files lack it get it), and changes nothing that is served.
            if not same_document(history.version(catalog.version), catalog):
                with_published(history, [(source, catalog)])  # raises, naming the file
            warning = None
        else:
            # Each version named by where it comes from: a file's version, or its publication.
            labels = {c.version: label for label, c in published}
            served = [(labels.get(c.version, c.version), c) for c in history.versions]
            CatalogHistory.check([*served, (source, catalog)])  # CatalogError: every problem
            warning = _timing(catalog, now, lead, force=force)
        insert_version(
            session,
            version=catalog.version,
            effective_from=catalog.effective_from,
            document=document,
            sha256=sha,
            source=source,
            published_at=now,
        )
    return Publication(catalog, sha, stored=True, warning=warning)


def _timing(catalog: Catalog, now: datetime, lead: timedelta, *, force: bool) -> str | None:
    starts = catalog.effective_from
    if starts < now:
        raise PublishRefused(
            f"effective_from {starts.isoformat()} is in the past (now {now.isoformat()}): new "
            "business already priced since then would have been at another version; give it an "
            "effective_from in the future"
        )
    if starts >= now + lead:
        return None
    message = (
        f"effective_from {starts.isoformat()} is less than {int(lead.total_seconds())} s away "
        f"(now {now.isoformat()}): a replica that misses the notification loads it only at its "
        "next poll, and may price new business at the previous version until then"
    )
    if not force:
        raise PublishRefused(
            f"{message}; choose an effective_from at least {int(lead.total_seconds())} s ahead, "
            "or pass --force"
        )
    return f"warning: {message}"


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
        self._seen: dict[str, str] = {}  # version -> sha256 of every stored version dealt with
        self._in_force = served.in_force().version
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
        history = with_published(self.served.history, stored_catalogs(rows))
        self._seen = {row.version: row.sha256 for row in rows}
        self.served.replace(history)
        self._in_force = self.served.in_force().version
        self.checked_at = time.time()

    def run_once(self) -> bool:
        """Load whatever was published since the last look; True when the history served
        changed. Database errors are raised (the thread logs them and tries again)."""
        with statement_reads(self.factory) as session:
            fingerprints = stored_fingerprints(session)
            new = [v for v, sha in fingerprints.items() if self._seen.get(v) != sha]
            rows = stored_versions(session, new) if new else []
        self.checked_at = time.time()
        changed = self._load(rows) if rows else False
        in_force = self.served.in_force()
        if in_force.version != self._in_force:
            log.info("catalog version %s is in force from now", in_force.version)
            self._in_force = in_force.version
            self.on_switch(in_force)
        return changed

    def _load(self, rows: list[StoredVersion]) -> bool:
        history = self.served.history
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
                    continue
                history = history.with_version(catalog, row.label)
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
