"""`upshift ledger …` and `upshift report …`: the expansion ledger (filled in by its issue)."""

from __future__ import annotations

import click


@click.group()
def ledger() -> None:
    """The expansion ledger."""


@click.group()
def report() -> None:
    """Revenue reports."""
