"""Tables of the usage area (filled in by its issue)."""

from __future__ import annotations
