"""A catalog migration's request and its outcome, account by account and per tier: what
`upshift catalog migrate` decides (and, applied, does) for the accounts it moves to a version."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from service.domain.accounts import Plan
from service.domain.catalog import Catalog, CatalogHistory, Timing
from service.domain.catalog_diff import CatalogChange, PlanProblem, diff_catalogs
from service.domain.money import Money


class Outcome(StrEnum):
    MOVED = "moved"  # on the target version now (immediate, or a limits rollout)
    SCHEDULED = "scheduled"  # moves at its period end: the renewal applies it
    NOT_MOVED = "not_moved"  # the target cannot take it as it is (see its problems)
    ALREADY = "already"  # on the target version already, or already scheduled to it


@dataclass(frozen=True, slots=True)
class MigrationRequest:
    to_version: str
    when: Timing = Timing.immediate  # immediate or end_of_term
    tier: str | None = None
    account_ids: frozenset[str] | None = None  # only these (--accounts FILE)
    limits_only: bool = False  # move limits_version alone: no price, no invoice, no ledger

    def __post_init__(self) -> None:
        if self.when not in (Timing.immediate, Timing.end_of_term):
            raise ValueError(f"a migration is immediate or end_of_term, not {self.when}")


@dataclass(frozen=True, slots=True)
class AccountMove:
    """What the migration does (or, in a dry run, would do) to one account. MRR is the list
    MRR the ledger books (zero for an account that does not pay); `amount_due` is what an
    immediate move invoices now (negative: credited to the customer's balance)."""

    account_id: str
    tier: str
    from_version: str
    outcome: Outcome
    mrr_before: Money
    mrr_after: Money
    amount_due: Money
    plan: Plan | None = None
    problems: tuple[PlanProblem, ...] = ()


@dataclass(slots=True)
class TierTally:
    tier: str
    moved: int
    scheduled: int
    not_moved: int
    mrr_before: Money  # of the accounts moved or scheduled
    mrr_after: Money
    amount_due: Money

    @property
    def mrr_change(self) -> Money:
        return self.mrr_after - self.mrr_before


@dataclass(slots=True)
class MigrationReport:
    """A migration's outcome, dry or applied: per tier the accounts moved, scheduled and not
    moved and the MRR of those that move, and every account not moved with why."""

    target: Catalog
    request: MigrationRequest
    applied: bool
    considered: int = 0  # live accounts in scope (tier, accounts file)
    already: int = 0
    tiers: dict[str, TierTally] = field(default_factory=dict)
    not_moved: list[AccountMove] = field(default_factory=list)
    from_versions: set[str] = field(default_factory=set)
    ledger_entries: int = 0
    # Accounts billed by Stripe (billing backend stripe) that --apply refuses; a dry run counts
    # them and prices them like the others.
    stripe_billed: int = 0

    def add(self, move: AccountMove) -> None:
        if move.outcome is Outcome.ALREADY:
            self.already += 1
            return
        zero = Money.zero(self.target.currency)
        tally = self.tiers.get(move.tier)
        if tally is None:
            tally = self.tiers[move.tier] = TierTally(move.tier, 0, 0, 0, zero, zero, zero)
        if move.outcome is Outcome.NOT_MOVED:
            tally.not_moved += 1
            self.not_moved.append(move)
            return
        self.from_versions.add(move.from_version)
        if move.outcome is Outcome.MOVED:
            tally.moved += 1
        else:
            tally.scheduled += 1
        tally.mrr_before = tally.mrr_before + move.mrr_before
        tally.mrr_after = tally.mrr_after + move.mrr_after
        tally.amount_due = tally.amount_due + move.amount_due

    def tier_rows(self) -> list[TierTally]:
        """The tiers in the target's order, then any only accounts have."""
        order = [key for key in self.target.tiers if key in self.tiers]
        order += sorted(set(self.tiers) - set(order))
        return [self.tiers[key] for key in order]

    def _sum(self, name: str) -> Money:
        total = Money.zero(self.target.currency)
        for tally in self.tiers.values():
            total = total + getattr(tally, name)
        return total

    @property
    def moved(self) -> int:
        return sum(t.moved for t in self.tiers.values())

    @property
    def scheduled(self) -> int:
        return sum(t.scheduled for t in self.tiers.values())

    @property
    def mrr_before(self) -> Money:
        return self._sum("mrr_before")

    @property
    def mrr_after(self) -> Money:
        return self._sum("mrr_after")

    @property
    def mrr_change(self) -> Money:
        return self.mrr_after - self.mrr_before

    @property
    def amount_due(self) -> Money:
        return self._sum("amount_due")

    def changes(self, history: CatalogHistory) -> dict[str, tuple[CatalogChange, ...]]:
        """What differs from each version the moved accounts come from to the target."""
        return {
            version: diff_catalogs(history.version(version), self.target)
            for version in sorted(self.from_versions)
        }
