"""Catalog versions published into the database: the table, its SQL, and the notification that
tells every replica a version was published or withdrawn (PostgreSQL NOTIFY on commit)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, String, inspect, or_, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from service.adapters.ledger_tables import LedgerEntryRow
from service.adapters.orm import AccountRow, Base

# Replicas LISTEN here (adapters.change_feed.ChangeListener); the payload is the version.
CATALOG_CHANNEL = "upshift_catalog_versions"


class CatalogVersionRow(Base):
    """One published catalog version. Its document is never updated: a version is immutable
    once stored, because accounts are priced at it (it may be withdrawn before anything is)."""

    __tablename__ = "catalog_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Not unique here: a withdrawn version's start may be taken by its correction (the versions
    # served are checked against each other: history_problems).
    effective_from: Mapped[datetime]
    # The validated catalog with every field explicit (catalog_loader.canonical_document).
    document: Mapped[dict[str, Any]]
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(255))  # the file it was published from
    published_at: Mapped[datetime]
    # Withdrawn before anything was priced at it: no longer served, its name never reused.
    withdrawn_at: Mapped[datetime | None]


@dataclass(frozen=True, slots=True)
class StoredVersion:
    version: str
    effective_from: datetime
    sha256: str
    source: str
    published_at: datetime
    document: dict[str, Any]
    withdrawn_at: datetime | None = None

    @property
    def label(self) -> str:
        """How reports name it: where it comes from, as a file name names a file version."""
        return f"published {self.version} ({self.source})"


def has_catalog_table(engine: Engine) -> bool:
    """Whether the database is migrated far enough to hold published versions."""
    return inspect(engine).has_table(CatalogVersionRow.__tablename__)


def stored_fingerprints(session: Session) -> dict[str, str]:
    """Each served version's sha256: a poll reads this much, documents only when one is new."""
    rows = session.execute(
        select(CatalogVersionRow.version, CatalogVersionRow.sha256).where(
            CatalogVersionRow.withdrawn_at.is_(None)
        )
    )
    return {version: sha for version, sha in rows}


def stored_versions(
    session: Session, versions: Collection[str] | None = None, *, withdrawn: bool = False
) -> list[StoredVersion]:
    """The stored versions served (all, or those named; the withdrawn ones too if asked), in
    the order they were published."""
    statement = select(CatalogVersionRow).order_by(
        CatalogVersionRow.published_at, CatalogVersionRow.version
    )
    if versions is not None:
        statement = statement.where(CatalogVersionRow.version.in_(sorted(versions)))
    if not withdrawn:
        statement = statement.where(CatalogVersionRow.withdrawn_at.is_(None))
    return [
        StoredVersion(
            row.version,
            row.effective_from,
            row.sha256,
            row.source,
            row.published_at,
            row.document,
            row.withdrawn_at,
        )
        for row in session.scalars(statement)
    ]


def lock_for_publishing(session: Session) -> None:
    """Publishers one at a time: each checks its version against all the others stored. On
    PostgreSQL a lock that only publishers take (readers are not blocked); SQLite's write
    transactions are serial already (BEGIN IMMEDIATE, see adapters.db)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE catalog_versions IN SHARE ROW EXCLUSIVE MODE"))


def insert_version(
    session: Session,
    *,
    version: str,
    effective_from: datetime,
    document: dict[str, Any],
    sha256: str,
    source: str,
    published_at: datetime,
) -> None:
    """Store the version and, on PostgreSQL, tell every replica when the transaction commits."""
    session.add(
        CatalogVersionRow(
            version=version,
            effective_from=effective_from,
            document=document,
            sha256=sha256,
            source=source[:255],
            published_at=published_at,
        )
    )
    session.flush()
    _notify(session, version)


def mark_withdrawn(session: Session, version: str, at: datetime) -> None:
    """Withdraw a published version no one is on yet; every replica is told on commit."""
    session.execute(
        update(CatalogVersionRow)
        .where(CatalogVersionRow.version == version)
        .values(withdrawn_at=at)
    )
    _notify(session, version)


def version_in_use(session: Session, version: str) -> str | None:
    """What prices at `version` (an account, a ledger entry), described; None: nothing."""
    account = session.scalar(
        select(AccountRow.id)
        .where(or_(AccountRow.catalog_version == version, AccountRow.limits_version == version))
        .limit(1)
    )
    if account is not None:
        return f"account '{account}' is on it"
    entry = session.scalar(
        select(LedgerEntryRow.id).where(LedgerEntryRow.catalog_version == version).limit(1)
    )
    return f"ledger entry {entry} names it" if entry is not None else None


def _notify(session: Session, version: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Delivered only if, and when, the transaction commits (as change_feed's notifications).
        session.execute(
            text("SELECT pg_notify(:channel, :version)"),
            {"channel": CATALOG_CHANNEL, "version": version},
        )
