"""Publishing a catalog version to every replica (`upshift catalog publish`) and withdrawing
one before anything is priced at it (`upshift catalog withdraw`): one transaction each, checked
against every version served, the replicas notified on commit (see services.catalogs for how
they load it)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from service.adapters.catalog_loader import (
    canonical_document,
    document_sha256,
    same_document,
    with_published,
)
from service.adapters.catalog_store import (
    StoredVersion,
    insert_version,
    lock_for_publishing,
    mark_withdrawn,
    stored_versions,
    version_in_use,
)
from service.adapters.db import transaction
from service.domain.catalog import Catalog, CatalogError, CatalogHistory, CatalogIssue
from service.services.catalogs import stored_catalogs


def publish_lead(poll_s: float) -> timedelta:
    """How far ahead of its `effective_from` a version must be published: three polls of every
    replica's watcher (a notification is lost only with its connection, and two failed polls
    are still in time), and never under a minute (clocks of hosts differ a little)."""
    return max(timedelta(seconds=3 * poll_s), timedelta(minutes=1))


class PublishRefused(Exception):
    """The catalog is valid, but publishing it now would break what is served (its timing)."""


@dataclass(frozen=True, slots=True)
class Publication:
    catalog: Catalog
    sha256: str
    stored: bool  # False: this very document was published before; nothing changed
    warning: str | None = None


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
        stored = next(iter(stored_versions(session, [catalog.version], withdrawn=True)), None)
        if stored is not None and stored.withdrawn_at is not None:
            raise PublishRefused(
                f"version '{catalog.version}' was withdrawn on "
                f"{stored.withdrawn_at.isoformat()}; a version name stands for one document "
                "for good: publish it under a new version"
            )
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


@dataclass(frozen=True, slots=True)
class Withdrawal:
    row: StoredVersion  # as it is now: withdrawn_at set
    withdrawn: bool  # False: it was withdrawn before; nothing changed


def withdraw_catalog(
    factory: sessionmaker[Session], version: str, now: datetime, *, lead: timedelta
) -> Withdrawal:
    """Stop serving a published version before anything is priced at it, and notify the
    replicas: it must take effect `lead` or more from `now` (no replica can be serving it to
    new business yet), and no account or ledger entry may name it (PublishRefused otherwise).
    Its row stays, marked withdrawn: the name is not used again. Withdrawn already: a no-op."""
    with transaction(factory) as session:
        lock_for_publishing(session)
        row = next(iter(stored_versions(session, [version], withdrawn=True)), None)
        if row is None:
            raise PublishRefused(
                f"version '{version}' is not published (a version at the catalog path is a "
                "file: it goes with its file)"
            )
        if row.withdrawn_at is not None:
            return Withdrawal(row, withdrawn=False)
        if row.effective_from < now + lead:
            raise PublishRefused(
                f"version '{version}' takes effect at {row.effective_from.isoformat()}, less "
                f"than {int(lead.total_seconds())} s from now ({now.isoformat()}) or already: "
                "new business may be priced at it; publish a correction as a new version"
            )
        used = version_in_use(session, version)
        if used is not None:
            raise PublishRefused(f"version '{version}' is in use ({used}); it stays published")
        mark_withdrawn(session, version, now)
    return Withdrawal(replace(row, withdrawn_at=now), withdrawn=True)
