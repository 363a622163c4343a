"""Catalog versions published into the database: the table, its SQL, and the notification that
tells every replica a version was published (PostgreSQL NOTIFY on commit)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, String, inspect, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from service.adapters.orm import Base

# Replicas LISTEN here (adapters.change_feed.ChangeListener); the payload is the version.
CATALOG_CHANNEL = "upshift_catalog_versions"


class CatalogVersionRow(Base):
    """One published catalog version. Only ever inserted: a version is immutable once stored,
    because accounts are priced at it."""

    __tablename__ = "catalog_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    effective_from: Mapped[datetime] = mapped_column(unique=True)
    # The validated catalog with every field explicit (catalog_loader.canonical_document).
    document: Mapped[dict[str, Any]]
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(255))  # the file it was published from
    published_at: Mapped[datetime]


@dataclass(frozen=True, slots=True)
class StoredVersion:
    version: str
    effective_from: datetime
    sha256: str
    source: str
    published_at: datetime
    document: dict[str, Any]

    @property
    def label(self) -> str:
        """How reports name it: where it comes from, as a file name names a file version."""
        return f"published {self.version} ({self.source})"


def has_catalog_table(engine: Engine) -> bool:
    """Whether the database is migrated far enough to hold published versions."""
    return inspect(engine).has_table(CatalogVersionRow.__tablename__)


def stored_fingerprints(session: Session) -> dict[str, str]:
    """Each stored version's sha256: a poll reads this much, documents only when one is new."""
    rows = session.execute(select(CatalogVersionRow.version, CatalogVersionRow.sha256))
    return {version: sha for version, sha in rows}


def stored_versions(
    session: Session, versions: Collection[str] | None = None
) -> list[StoredVersion]:
    """The stored versions (all, or those named), in the order they were published."""
    statement = select(CatalogVersionRow).order_by(
        CatalogVersionRow.published_at, CatalogVersionRow.version
    )
    if versions is not None:
        statement = statement.where(CatalogVersionRow.version.in_(sorted(versions)))
    return [
        StoredVersion(
            row.version,
            row.effective_from,
            row.sha256,
            row.source,
            row.published_at,
            row.document,
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
    if session.get_bind().dialect.name == "postgresql":
        # Delivered only if, and when, the transaction commits (as change_feed's notifications).
        session.execute(
            text("SELECT pg_notify(:channel, :version)"),
            {"channel": CATALOG_CHANNEL, "version": version},
        )
