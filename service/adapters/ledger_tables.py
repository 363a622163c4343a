"""Tables of the ledger area (filled in by its issue)."""

from __future__ import annotations
