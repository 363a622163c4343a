"""Tables of the billing area (filled in by its issue)."""

from __future__ import annotations
