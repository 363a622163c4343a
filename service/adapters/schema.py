"""Imports every table module, so that Base.metadata describes the whole schema."""

from __future__ import annotations

from service.adapters import (  # noqa: F401 - imported for their tables
    billing_tables,
    catalog_store,
    ledger_tables,
    offer_tables,
    orm,
    usage_tables,
)
from service.adapters.orm import Base

metadata = Base.metadata
