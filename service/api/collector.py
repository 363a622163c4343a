"""Keep the cyclic garbage collector's full collections short in a long-running server.

A full collection visits every tracked object. The offer cache keeps tens of thousands of
long-lived objects, so under load a full collection took 250-300 ms every few seconds, and that
pause was the p99 of the offer endpoint. While the server runs, full collections happen only
here: every `freeze_every_s` a collection of what is not frozen yet (short: only what is new
since the last freeze), then the survivors are moved out of the collector's sight (gc.freeze).
The young generations are still collected automatically. Frozen objects are still freed by
reference counting when nothing refers to them any more (cache entries hold no cycles); cyclic
garbage among them waits for the hourly unfreeze and full collection, the one long pause left.
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


def freeze_survivors() -> None:
    """Collect what is not frozen yet, then freeze what survived."""
    gc.collect()
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
