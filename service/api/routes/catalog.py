"""The active catalog's public fields: what is sold, at which price, with which upgrade paths,
and the versions this replica serves."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import CatalogDep
from service.api.schemas import (
    AddOnOut,
    CatalogOut,
    CatalogVersionOut,
    FeatureOut,
    PathOut,
    PriceOut,
    SeatsOut,
    TierOut,
    TierPriceOut,
)
from service.domain.catalog import Catalog

router = APIRouter(prefix="/v1", tags=["catalog"])


def public_catalog(catalog: Catalog) -> CatalogOut:
    """Stripe lookup keys stay inside: the frontend needs prices, not provider identifiers."""
    currency = catalog.currency

    def price(amount: int) -> PriceOut:
        return PriceOut(amount_minor=amount, currency=currency)

    tiers = sorted(catalog.tiers.items(), key=lambda item: item[1].rank)
    return CatalogOut(
        version=catalog.version,
        effective_from=catalog.effective_from,
        currency=currency,
        features=[
            FeatureOut(key=key, name=f.name, kind=f.kind, unit=f.unit)
            for key, f in catalog.features.items()
        ],
        tiers=[
            TierOut(
                key=key,
                name=tier.name,
                rank=tier.rank,
                self_serve=tier.self_serve,
                prices={
                    interval: TierPriceOut(
                        base=price(p.base.amount),
                        seat=price(p.seat.amount) if p.seat else None,
                    )
                    for interval, p in tier.prices.items()
                },
                seats=SeatsOut(included=tier.seats.included, max=tier.seats.max),
                limits=dict(tier.limits),
                addons=list(tier.addons),
                upgrades=[PathOut(to=p.to, timing=p.timing) for p in tier.upgrades],
                downgrades=[PathOut(to=p.to, timing=p.timing) for p in tier.downgrades],
            )
            for key, tier in tiers
        ],
        addons=[
            AddOnOut(
                key=key,
                name=addon.name,
                kind=addon.kind,
                grants=dict(addon.grants),
                max_quantity=addon.max_quantity,
                prices={interval: price(p.amount) for interval, p in addon.prices.items()},
            )
            for key, addon in catalog.addons.items()
        ],
        versions=[
            CatalogVersionOut(version=c.version, effective_from=c.effective_from)
            for c in catalog.history.versions
        ],
    )


@router.get("/catalog", response_model=CatalogOut)
async def get_catalog(catalog: CatalogDep) -> CatalogOut:
    return public_catalog(catalog)
