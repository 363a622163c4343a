"""`upshift signals …`: expansion signals (filled in by the usage issue)."""

from __future__ import annotations

import click


@click.group()
def signals() -> None:
    """Expansion signals."""
