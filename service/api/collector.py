"""Keep the cyclic garbage collector's full collections short in a long-running server.

A full collection visits every tracked object. The offer cache keeps tens of thousands of
long-lived objects, so under load a full collection took 250-300 ms every few seconds, and that
pause was the p99 of the offer endpoint. While the server runs, full collections happen only
once an hour: every `freeze_every_s` the young generations are collected and everything that
survived is moved out of the collector's sight (gc.freeze). What reached the old generation
since the last freeze is frozen without a look: a process that has just started, or a worker of
several that meets accounts another worker cached, takes in thousands of offer pages (read back
from the shared read model) a second, and a full collection of what was new since the last
freeze took 150-300 ms there. The young generations are still collected automatically. Frozen
objects are still freed by reference counting when nothing refers to them any more (cache
entries hold no cycles); cyclic garbage among them waits for the hourly unfreeze and full
collection, the one long pause left.
"""

from __future__ import annotations

import asyncio
import gc
import time

FREEZE_EVERY_S = 5.0
# Automatic full collections wait for this many collections of the middle generation: never,
# in practice, between two freezes.
NO_AUTOMATIC_FULL_COLLECTIONS = 1_000_000
RECLAIM_EVERY_S = 3600.0


def freeze_survivors(*, full: bool = False) -> None:
    """Collect the young generations (every generation when `full`: at start-up, before any
    load), then freeze what survived, the old generation included."""
    gc.collect(2 if full else 1)
    gc.freeze()


async def tend_collector(
    freeze_every_s: float = FREEZE_EVERY_S, reclaim_every_s: float = RECLAIM_EVERY_S
) -> None:
    """Run for the life of the server (cancel it at shutdown: the thresholds are restored)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], NO_AUTOMATIC_FULL_COLLECTIONS)
    reclaimed_at = time.monotonic()
    try:
        while True:
            await asyncio.sleep(freeze_every_s)
            if time.monotonic() - reclaimed_at >= reclaim_every_s:
                gc.unfreeze()  # the next collection sees everything once: cycles died frozen
                reclaimed_at = time.monotonic()
            freeze_survivors()
    finally:
        gc.set_threshold(*thresholds)
