"""The pricing catalog: tiers, seats, features, add-ons, thresholds and allowed upgrade paths."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
)

from service.domain.money import Money, validate_currency

Key = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
LookupKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]+$", min_length=1, max_length=200)]
MinorUnits = Annotated[
    StrictInt, Field(ge=0, description="Integer minor units (cents), never a float")
]
Percent = Annotated[StrictInt, Field(ge=1, le=1000)]

SEATS_FEATURE = "seats"  # reserved key: active seats, measured against purchased seats


class Interval(StrEnum):
    month = "month"
    year = "year"

    @property
    def months(self) -> int:
        return 1 if self is Interval.month else 12


class FeatureKind(StrEnum):
    capacity = "capacity"  # a standing amount (projects); counted over the account's lifetime
    metered = "metered"  # consumed and reset every usage period (API calls)
    boolean = "boolean"  # on or off (SSO)


class UsageReset(StrEnum):
    calendar_month = "calendar_month"
    billing_period = "billing_period"


class Timing(StrEnum):
    immediate = "immediate"
    end_of_term = "end_of_term"
    sales_assisted = "sales_assisted"


class AddOnKind(StrEnum):
    usage_pack = "usage_pack"
    feature = "feature"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Feature(Frozen):
    name: str
    kind: FeatureKind
    unit: str | None = None
    reset: UsageReset | None = Field(
        default=None, description="Metered features only; calendar_month (UTC) when omitted"
    )


class Price(Frozen):
    amount: MinorUnits
    lookup_key: LookupKey


class TierPrice(Frozen):
    base: Price
    seat: Price | None = Field(default=None, description="Per seat above the included seats")


class Seats(Frozen):
    included: Annotated[StrictInt, Field(ge=1)]
    max: Annotated[StrictInt, Field(ge=1)]


class UpgradePath(Frozen):
    to: Key
    timing: Timing = Timing.immediate


class DowngradePath(Frozen):
    to: Key
    timing: Timing = Timing.end_of_term


LimitValue = StrictBool | Annotated[StrictInt, Field(ge=0)] | None


class Tier(Frozen):
    name: str
    rank: StrictInt
    self_serve: bool = Field(default=True, description="False: sales-assisted, no list price")
    prices: dict[Interval, TierPrice] = Field(default_factory=dict)
    seats: Seats
    limits: dict[Key, LimitValue] = Field(
        default_factory=dict,
        description="Per feature: an integer, null (unlimited) or a boolean; omitted = none",
    )
    addons: list[Key] = Field(default_factory=list)
    upgrades: list[UpgradePath] = Field(default_factory=list)
    downgrades: list[DowngradePath] = Field(default_factory=list)


class AddOn(Frozen):
    name: str
    kind: AddOnKind
    grants: dict[Key, StrictInt | StrictBool] = Field(
        description="usage_pack: feature -> amount added per unit; feature: feature -> true"
    )
    max_quantity: Annotated[StrictInt, Field(ge=1)] = 1
    prices: dict[Interval, Price]


class Threshold(Frozen):
    key: Key
    feature: Key
    at_percent: Percent
    level: Literal["warn", "limit"] = "warn"


class ReadinessWeights(Frozen):
    utilization: Annotated[StrictInt, Field(ge=0, le=100)] = 50
    value_workflows: Annotated[StrictInt, Field(ge=0, le=100)] = 30
    activation_window: Annotated[StrictInt, Field(ge=0, le=100)] = 20


class AcvBands(Frozen):
    """Annual contract value bands in minor units that route a signal to people."""

    cs_assisted_from: MinorUnits = 3_000_000
    sales_assisted_from: MinorUnits = 10_000_000


class SignalRules(Frozen):
    activation_milestone: Key = "activated"
    value_workflows: list[Key] = Field(default_factory=list)
    post_activation_window_days: Annotated[StrictInt, Field(ge=1, le=366)] = 30
    readiness_weights: ReadinessWeights = ReadinessWeights()
    acv_bands: AcvBands = AcvBands()


class Catalog(Frozen):
    """A validated catalog. Build one with `Catalog.parse`, which runs the cross-checks."""

    version: Annotated[str, Field(min_length=1, max_length=64)]
    effective_from: AwareDatetime
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    features: dict[Key, Feature]
    tiers: dict[Key, Tier]
    addons: dict[Key, AddOn] = Field(default_factory=dict)
    thresholds: list[Threshold] = Field(default_factory=list)
    signals: SignalRules = SignalRules()
    # The versions this one is published with (see CatalogHistory); None: it stands alone.
    _history: CatalogHistory | None = PrivateAttr(default=None)

    @classmethod
    def parse(cls, document: Any) -> Catalog:
        """Validate a raw document; raises CatalogError naming every bad spot."""
        from pydantic import ValidationError

        try:
            catalog = cls.model_validate(document)
        except ValidationError as exc:
            schema = [
                CatalogIssue(format_path(e["loc"]), _pydantic_message(e)) for e in exc.errors()
            ]
            # Report every problem in one run: the cross-checks run on the parts that are
            # valid on their own, so a bad price does not hide a path to an unknown tier.
            raise CatalogError(schema + _cross_check_valid_parts(document, schema)) from None
        problems = list(cross_check(catalog))
        if problems:
            raise CatalogError(problems)
        return catalog

    # -- lookups used across the service -------------------------------------------------------
    def at_version(self, version: str) -> Catalog:
        """The catalog of `version` among the versions this one is published with ("" or its
        own version: this one). An account's plan is priced at its own version."""
        if not version or version == self.version:
            return self
        if self._history is None:
            raise UnknownCatalogVersion(version, (self.version,))
        return self._history.version(version)

    @property
    def superseded_at(self) -> datetime | None:
        """When the next version takes over new business (None: this is the latest). What was
        priced for new business at this version is good until then."""
        if self._history is None:
            return None
        versions = self._history.versions
        later = [c.effective_from for c in versions if c.effective_from > self.effective_from]
        return min(later, default=None)

    @property
    def history(self) -> CatalogHistory:
        """Every version this catalog is published with (itself alone when it stands alone)."""
        return self._history if self._history is not None else CatalogHistory([self])

    def tier(self, key: str) -> Tier:
        return self.tiers[key]

    def money(self, amount_minor: int) -> Money:
        return Money(amount_minor, self.currency)

    def upgrade_path(self, from_tier: str, to_tier: str) -> UpgradePath | DowngradePath | None:
        """The allow-listed path between two tiers, or None: every change is denied by default."""
        tier = self.tiers[from_tier]
        for path in (*tier.upgrades, *tier.downgrades):
            if path.to == to_tier:
                return path
        return None

    def limit(self, tier_key: str, feature: str, addons: dict[str, int]) -> int | bool | None:
        """The effective limit of a feature for a tier with add-ons; None means unlimited."""
        kind = self.features[feature].kind
        base = self.tiers[tier_key].limits.get(feature, False if kind is FeatureKind.boolean else 0)
        for addon_key, quantity in addons.items():
            grant = self.addons[addon_key].grants.get(feature)
            if grant is None or quantity <= 0:
                continue
            if kind is FeatureKind.boolean:
                base = base or bool(grant)
            elif base is not None:
                base = int(base) + int(grant) * quantity
        return base

    def all_prices(self) -> Iterator[tuple[str, Price]]:
        """Every price with the catalog path it stands at."""
        for tier_key, tier in self.tiers.items():
            for interval, tier_price in tier.prices.items():
                yield f"tiers.{tier_key}.prices.{interval.value}.base", tier_price.base
                if tier_price.seat is not None:
                    yield f"tiers.{tier_key}.prices.{interval.value}.seat", tier_price.seat
        for addon_key, addon in self.addons.items():
            for interval, price in addon.prices.items():
                yield f"addons.{addon_key}.prices.{interval.value}", price


class UnknownCatalogVersion(LookupError):
    """A plan names a catalog version that is not loaded (a version still in use was removed)."""

    def __init__(self, version: str, known: tuple[str, ...]) -> None:
        self.version = version
        super().__init__(
            f"catalog version '{version}' is not loaded (loaded: {', '.join(known)}); "
            "a version stays in pricing_catalog/ while accounts are on it"
        )


class CatalogHistory:
    """The published catalog versions, oldest first. New business gets the version in force
    (the latest whose `effective_from` has come); an account keeps the version its prices
    come from until it changes tier or is migrated (grandfathering).

    Each version is linked to this history (`Catalog.at_version`), so any of them prices a
    plan of any other. Build one with `CatalogHistory.check` to get every cross-version
    problem reported; the constructor assumes they were checked.
    """

    def __init__(self, versions: list[Catalog]) -> None:
        ordered = sorted(versions, key=lambda c: c.effective_from)
        linked = [catalog.model_copy() for catalog in ordered]
        for catalog in linked:
            catalog._history = self
        self.versions: tuple[Catalog, ...] = tuple(linked)
        self._by_version = {catalog.version: catalog for catalog in linked}

    @classmethod
    def check(cls, versions: list[tuple[str, Catalog]]) -> CatalogHistory:
        """The history of (source, catalog) pairs; CatalogError naming each source and spot."""
        problems = list(history_problems(versions))
        if problems:
            raise CatalogError(problems)
        return cls([catalog for _source, catalog in versions])

    @property
    def latest(self) -> Catalog:
        return self.versions[-1]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.version for c in self.versions)

    def version(self, version: str) -> Catalog:
        found = self._by_version.get(version)
        if found is None:
            raise UnknownCatalogVersion(version, self.names)
        return found

    def in_force(self, at: datetime) -> Catalog:
        """The version new business gets at `at`: the latest in effect (the first one before
        any is in effect, so a clock set before the first version still prices)."""
        current = self.versions[0]
        for catalog in self.versions[1:]:
            if catalog.effective_from > at:
                break
            current = catalog
        return current

    def with_version(self, catalog: Catalog, source: str = "(published)") -> CatalogHistory:
        """This history and one more version, checked against the others."""
        pairs = [(c.version, c) for c in self.versions if c.version != catalog.version]
        return CatalogHistory.check([*pairs, (source, catalog)])


def load_each(
    loaders: Iterable[tuple[str, Callable[[], Catalog]]],
) -> list[tuple[str, Catalog]]:
    """(source, catalog) of each loader; every one is tried, and the problems of all that fail
    are raised together as one CatalogError, each named by its source (`file: path: message`)."""
    issues: list[CatalogIssue] = []
    loaded: list[tuple[str, Catalog]] = []
    for source, load in loaders:
        try:
            loaded.append((source, load()))
        except CatalogError as exc:
            issues += [CatalogIssue(f"{exc.source}: {i.path}", i.message) for i in exc.issues]
    if issues:
        raise CatalogError(issues)
    return loaded


def history_problems(versions: list[tuple[str, Catalog]]) -> Iterator[CatalogIssue]:
    """What makes a set of versions unusable together, each named by its source and spot: a
    version or an `effective_from` used twice, another currency (accounts keep theirs), and a
    lookup key that stands for two amounts (a Stripe price is immutable: a new amount is a new
    price, so it needs a new lookup key; the same key in two versions is the same price)."""
    if not versions:
        yield CatalogIssue("(catalog)", "no catalog version found")
        return
    seen_version: dict[str, str] = {}
    seen_start: dict[datetime, str] = {}
    keys: dict[str, tuple[int, str, str]] = {}
    first_currency = versions[0][1].currency
    for source, catalog in versions:
        if catalog.version in seen_version:
            yield CatalogIssue(
                f"{source}: version",
                f"version '{catalog.version}' is already in {seen_version[catalog.version]}",
            )
        seen_version.setdefault(catalog.version, source)
        if catalog.effective_from in seen_start:
            yield CatalogIssue(
                f"{source}: effective_from",
                f"{catalog.effective_from.isoformat()} is already the start of "
                f"{seen_start[catalog.effective_from]}",
            )
        seen_start.setdefault(catalog.effective_from, source)
        if catalog.currency != first_currency:
            yield CatalogIssue(
                f"{source}: currency",
                f"every version bills in {first_currency} (accounts keep their currency)",
            )
        for path, price in catalog.all_prices():
            interval = path.split(".prices.")[1].split(".")[0]
            known = keys.get(price.lookup_key)
            if known is None:
                keys[price.lookup_key] = (price.amount, interval, f"{source}: {path}")
            elif (known[0], known[1]) != (price.amount, interval):
                yield CatalogIssue(
                    f"{source}: {path}.lookup_key",
                    f"'{price.lookup_key}' is {known[0]} per {known[1]} at {known[2]}; a new "
                    "amount is a new price and needs a new lookup key",
                )


@dataclass(frozen=True, slots=True)
class CatalogIssue:
    path: str
    message: str


class CatalogError(ValueError):
    """The catalog is invalid; each issue names the path inside the document."""

    def __init__(self, issues: list[CatalogIssue], source: str | None = None) -> None:
        self.issues = issues
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return "\n".join(f"{prefix}{issue.path}: {issue.message}" for issue in self.issues)

    def with_source(self, source: str) -> CatalogError:
        return CatalogError(self.issues, source)


def format_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """('tiers', 'growth', 'upgrades', 0, 'to') -> 'tiers.growth.upgrades[0].to'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def _pydantic_message(error: Any) -> str:
    if error["type"] in {"int_type", "int_from_float"} and isinstance(error.get("input"), float):
        return f"must be an integer of minor units, got {error['input']!r}"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return str(error["msg"])


def _issue(path: str, message: str) -> CatalogIssue:
    return CatalogIssue(path, message)


def cross_check(catalog: Catalog) -> Iterator[CatalogIssue]:
    """Checks that span several parts of the catalog; pydantic has checked each part alone."""
    try:
        validate_currency(catalog.currency)
    except ValueError as exc:
        yield _issue("currency", str(exc))
    if SEATS_FEATURE in catalog.features:
        yield _issue(f"features.{SEATS_FEATURE}", "'seats' is reserved for active seats")
    for key, feature in catalog.features.items():
        if feature.reset is not None and feature.kind is not FeatureKind.metered:
            yield _issue(f"features.{key}.reset", "only metered features reset")
    if not catalog.tiers:
        yield _issue("tiers", "at least one tier is required")
    yield from _check_ranks(catalog)
    for tier_key, tier in catalog.tiers.items():
        yield from _check_tier(catalog, tier_key, tier)
    for addon_key, addon in catalog.addons.items():
        yield from _check_addon(catalog, addon_key, addon)
    yield from _check_thresholds(catalog)
    yield from _check_lookup_keys(catalog)
    bands = catalog.signals.acv_bands
    if bands.sales_assisted_from < bands.cs_assisted_from:
        yield _issue("signals.acv_bands.sales_assisted_from", "must be >= cs_assisted_from")


_SECTIONS: tuple[tuple[str, type[Frozen]], ...] = (
    ("features", Feature),
    ("tiers", Tier),
    ("addons", AddOn),
)


def _cross_check_valid_parts(document: Any, schema: list[CatalogIssue]) -> list[CatalogIssue]:
    """The cross-checks of a document that failed schema validation, run on a catalog of the
    features, tiers and add-ons that are valid on their own. What the schema errors already
    cover is left out: issues inside a reported spot, and references to a part that is
    invalid (it exists; it is broken, and that is reported)."""
    from pydantic import ValidationError

    if not isinstance(document, dict):
        return []
    parts: dict[str, dict[str, Any]] = {}
    broken: set[str] = set()
    for section, model in _SECTIONS:
        raw = document.get(section)
        parts[section] = {}
        if not isinstance(raw, dict):
            continue
        for key, value in raw.items():
            try:
                parts[section][key] = model.model_validate(value)
            except ValidationError:
                broken.add(str(key))
    thresholds: list[Threshold] = []
    try:
        thresholds = [Threshold.model_validate(t) for t in document.get("thresholds") or []]
        signals = SignalRules.model_validate(document.get("signals") or {})
    except (ValidationError, TypeError):
        thresholds, signals = [], SignalRules()  # reported by the schema; indices would shift
    partial = Catalog.model_construct(
        version=str(document.get("version", "")),
        effective_from=document.get("effective_from"),
        currency=str(document.get("currency", "")),
        features=parts["features"],
        tiers=parts["tiers"],
        addons=parts["addons"],
        thresholds=thresholds,
        signals=signals,
    )
    reported = [issue.path for issue in schema]

    def covered(issue: CatalogIssue) -> bool:
        inside = any(issue.path == p or issue.path.startswith((f"{p}.", f"{p}[")) for p in reported)
        return inside or any(f"'{key}'" in issue.message for key in broken)

    return [issue for issue in cross_check(partial) if not covered(issue)]


def _check_ranks(catalog: Catalog) -> Iterator[CatalogIssue]:
    seen: dict[int, str] = {}
    for tier_key, tier in catalog.tiers.items():
        if tier.rank in seen:
            yield _issue(
                f"tiers.{tier_key}.rank", f"rank {tier.rank} already used by '{seen[tier.rank]}'"
            )
        seen.setdefault(tier.rank, tier_key)


def _check_tier(catalog: Catalog, tier_key: str, tier: Tier) -> Iterator[CatalogIssue]:
    here = f"tiers.{tier_key}"
    if tier.seats.max < tier.seats.included:
        yield _issue(f"{here}.seats.max", "must be >= seats.included")
    if tier.self_serve and not tier.prices:
        yield _issue(f"{here}.prices", "a self-serve tier needs at least one price")
    for interval, price in tier.prices.items():
        if tier.seats.max > tier.seats.included and price.seat is None:
            yield _issue(
                f"{here}.prices.{interval.value}.seat",
                "required: the tier sells seats above the included ones",
            )
    for feature_key, value in tier.limits.items():
        path = f"{here}.limits.{feature_key}"
        feature = catalog.features.get(feature_key)
        if feature is None:
            yield _issue(path, f"unknown feature '{feature_key}'")
        elif feature.kind is FeatureKind.boolean and not isinstance(value, bool):
            yield _issue(
                path, f"feature '{feature_key}' is boolean: the limit must be true or false"
            )
        elif feature.kind is not FeatureKind.boolean and isinstance(value, bool):
            yield _issue(
                path, f"feature '{feature_key}' is {feature.kind.value}: the limit must be a number"
            )
    for index, addon_key in enumerate(tier.addons):
        addon = catalog.addons.get(addon_key)
        if addon is None:
            yield _issue(f"{here}.addons[{index}]", f"unknown add-on '{addon_key}'")
            continue
        for interval in tier.prices:
            if interval not in addon.prices:
                yield _issue(
                    f"{here}.addons[{index}]",
                    f"add-on '{addon_key}' has no {interval.value} price for this tier's interval",
                )
    for kind, paths in (("upgrades", tier.upgrades), ("downgrades", tier.downgrades)):
        for index, path in enumerate(paths):
            spot = f"{here}.{kind}[{index}].to"
            target = catalog.tiers.get(path.to)
            if target is None:
                yield _issue(spot, f"unknown tier '{path.to}'")
            elif kind == "upgrades" and target.rank <= tier.rank:
                yield _issue(spot, f"upgrade target '{path.to}' must rank above '{tier_key}'")
            elif kind == "downgrades" and target.rank >= tier.rank:
                yield _issue(spot, f"downgrade target '{path.to}' must rank below '{tier_key}'")
            elif not target.self_serve and path.timing is not Timing.sales_assisted:
                yield _issue(
                    f"{here}.{kind}[{index}].timing",
                    f"'{path.to}' is sales-assisted: the timing must be sales_assisted",
                )


def _check_addon(catalog: Catalog, addon_key: str, addon: AddOn) -> Iterator[CatalogIssue]:
    here = f"addons.{addon_key}"
    if not addon.grants:
        yield _issue(f"{here}.grants", "an add-on must grant something")
    if not addon.prices:
        yield _issue(f"{here}.prices", "an add-on needs at least one price")
    for feature_key, grant in addon.grants.items():
        path = f"{here}.grants.{feature_key}"
        feature = catalog.features.get(feature_key)
        if feature is None:
            yield _issue(path, f"unknown feature '{feature_key}'")
        elif addon.kind is AddOnKind.usage_pack and (
            feature.kind is FeatureKind.boolean or isinstance(grant, bool) or grant <= 0
        ):
            yield _issue(path, "a usage pack grants a positive amount of a numeric feature")
        elif addon.kind is AddOnKind.feature and (
            feature.kind is not FeatureKind.boolean or grant is not True
        ):
            yield _issue(path, "a feature add-on grants a boolean feature: true")


def _check_thresholds(catalog: Catalog) -> Iterator[CatalogIssue]:
    seen: set[str] = set()
    for index, threshold in enumerate(catalog.thresholds):
        here = f"thresholds[{index}]"
        if threshold.key in seen:
            yield _issue(f"{here}.key", f"duplicate threshold key '{threshold.key}'")
        seen.add(threshold.key)
        if threshold.feature == SEATS_FEATURE:
            continue
        feature = catalog.features.get(threshold.feature)
        if feature is None:
            yield _issue(f"{here}.feature", f"unknown feature '{threshold.feature}'")
        elif feature.kind is FeatureKind.boolean:
            yield _issue(f"{here}.feature", f"'{threshold.feature}' is boolean: nothing to measure")
    signals = catalog.signals
    if signals.activation_milestone in signals.value_workflows:
        yield _issue("signals.value_workflows", "must not repeat the activation milestone")


def _check_lookup_keys(catalog: Catalog) -> Iterator[CatalogIssue]:
    seen: dict[str, str] = {}
    for path, price in catalog.all_prices():
        if price.lookup_key in seen:
            yield _issue(
                f"{path}.lookup_key",
                f"lookup_key '{price.lookup_key}' is already used at {seen[price.lookup_key]}",
            )
        seen.setdefault(price.lookup_key, path)


def catalog_json_schema() -> dict[str, Any]:
    """The JSON Schema editors use to validate catalog.yaml (generated, never hand-written)."""
    schema = Catalog.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Upshift pricing catalog"
    return schema
