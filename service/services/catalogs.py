"""The catalog versions a process serves, and the one in force for new business right now.

Every process reads the same versions (the files at the catalog path, plus any published into the
database: see `upshift catalog publish`), so every replica prices new business at the same version
at the same instant: the switch is each version's `effective_from`, not the moment a process
happened to load it.
"""

from __future__ import annotations

import threading
from datetime import datetime

from service.domain.catalog import Catalog, CatalogHistory
from service.ports import Clock


class ServedCatalogs:
    """The process's catalog history; `in_force()` is what new business is priced at. `history`
    is swapped whole (never edited), so a request reads one consistent set of versions."""

    def __init__(self, history: CatalogHistory, clock: Clock) -> None:
        self._history = history
        self.clock = clock
        self._lock = threading.Lock()

    @property
    def history(self) -> CatalogHistory:
        return self._history

    def in_force(self, at: datetime | None = None) -> Catalog:
        return self._history.in_force(self.clock.now() if at is None else at)

    def replace(self, history: CatalogHistory) -> bool:
        """Serve `history` from now on; False (and no change) when it holds the same versions."""
        with self._lock:
            if history.names == self._history.names:
                return False
            self._history = history
            return True
