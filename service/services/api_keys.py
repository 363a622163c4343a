"""Server API keys: created once, shown once, stored as a SHA-256 hash, checked by scope."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.orm import Session

from service.adapters.orm import ApiKeyRow
from service.adapters.repositories import ApiKeyRepository
from service.domain.errors import ValidationFailed
from service.ports import Clock

KEY_PREFIX = "upk_"


class Scope(StrEnum):
    admin = "admin"
    ingest = "ingest"
    finance = "finance"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a server key with scopes, or a session token bound to one account."""

    key_id: str
    scopes: frozenset[Scope]
    account_id: str | None = None

    def allows(self, scope: Scope) -> bool:
        # admin is the operator's key: it may do everything the narrower scopes may.
        return scope in self.scopes or Scope.admin in self.scopes


def hash_key(raw_key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def parse_scopes(values: list[str] | tuple[str, ...]) -> frozenset[Scope]:
    try:
        scopes = frozenset(Scope(value.strip()) for value in values if value.strip())
    except ValueError:
        allowed = ", ".join(s.value for s in Scope)
        raise ValidationFailed(f"scopes must be among: {allowed}", field="scopes") from None
    if not scopes:
        raise ValidationFailed("at least one scope is required", field="scopes")
    return scopes


def create_key(session: Session, clock: Clock, name: str, scopes: frozenset[Scope]) -> str:
    """Store a new key and return it in the clear; this is the only time it is visible."""
    raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
    ApiKeyRepository(session).add(
        ApiKeyRow(
            id=str(uuid.uuid4()),
            name=name,
            prefix=raw_key[:12],
            key_hash=hash_key(raw_key),
            scopes=sorted(s.value for s in scopes),
            created_at=clock.now(),
            revoked_at=None,
        )
    )
    return raw_key


def authenticate(session: Session, raw_key: str) -> Principal | None:
    if not raw_key.startswith(KEY_PREFIX):
        return None
    row = ApiKeyRepository(session).by_hash(hash_key(raw_key))
    if row is None:
        return None
    return Principal(key_id=row.id, scopes=frozenset(Scope(s) for s in row.scopes))


def list_keys(session: Session) -> list[ApiKeyRow]:
    """Every key, oldest first: its id, name, visible prefix, scopes and dates (never a hash)."""
    return ApiKeyRepository(session).all()


def revoke_key(session: Session, clock: Clock, key_id: str) -> bool:
    """Revoke a key at once (every replica checks keys in the database); False if there is no
    such key or it was revoked already."""
    return ApiKeyRepository(session).revoke(key_id, clock.now())
