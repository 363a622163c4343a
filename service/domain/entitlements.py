"""Entitlements: what an account may use now, feature by feature, for the product's own gates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.domain.usage import FeatureUsage, UsageSnapshot


@dataclass(frozen=True, slots=True)
class Entitlement:
    """One feature's gate.

    A boolean feature is allowed when the account's tier or an add-on grants it. A counted one
    (capacity, metered, seats) is allowed while something remains: `remaining` is
    `limit - used` (0 at or over the limit), `limit` None is unlimited. `resets_at` is when a
    metered counter starts again from zero (None: it never does).
    """

    feature: str
    kind: str
    allowed: bool
    limit: int | bool | None
    used: int | None
    remaining: int | None
    resets_at: datetime | None


def entitlement_of(usage: FeatureUsage) -> Entitlement:
    if isinstance(usage.limit, bool):
        return Entitlement(usage.feature, usage.kind, usage.limit, usage.limit, None, None, None)
    remaining = None if usage.limit is None else max(usage.limit - usage.used, 0)
    return Entitlement(
        feature=usage.feature,
        kind=usage.kind,
        allowed=remaining is None or remaining > 0,
        limit=usage.limit,
        used=usage.used,
        remaining=remaining,
        resets_at=usage.period.end if usage.period is not None else None,
    )


@dataclass(frozen=True, slots=True)
class Entitlements:
    """Every feature's gate for one account, good until `valid_until` (the earliest moment a
    counter resets or the billing period ends, whichever comes first)."""

    account_id: str
    features: dict[str, Entitlement]
    valid_until: datetime

    @property
    def period_end(self) -> datetime:  # what the account caches expire on
        return self.valid_until


def entitlements_of(snapshot: UsageSnapshot, period_end: datetime) -> Entitlements:
    features = {name: entitlement_of(usage) for name, usage in snapshot.features.items()}
    resets = [e.resets_at for e in features.values() if e.resets_at is not None]
    return Entitlements(snapshot.account_id, features, min([period_end, *resets]))
