"""Loaded (through PYTHONPATH) only by .ci/run's runs under Debian's faketime.

libfaketime 0.9.10 can fake the monotonic clock or not, and each choice breaks one call:
faked, every timed lock wait (threading.Event.wait, queue.get, join) hangs, because CPython waits
with sem_clockwait(CLOCK_MONOTONIC), which the library does not intercept; real
(FAKETIME_DONT_FAKE_MONOTONIC=1, as .ci/run sets), time.sleep fails with EINVAL, because the
library rewrites clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) as if it were a wall-clock
deadline. .ci/run keeps the monotonic clock real and sleeps through select() instead, which the
library leaves alone; the wall clock, which is what the suite must not depend on, stays faked.
"""

from __future__ import annotations

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep
