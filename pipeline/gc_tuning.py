"""Cyclic-GC settings for processes that keep thousands of short-lived containers alive at once.

Decoded events, widget states and open sockets are freed by reference counting; the cyclic
collector's default cadence (a young pass every 700 allocations) re-scans them over and over:
a quarter of a sink's CPU (bench/archive.py), 0.2-2.5 s pauses in the gateway
(bench/gateway.py). Process-wide, so only a component's own entry point (or a pool process's
initializer) calls it.
"""

from __future__ import annotations

import gc


def tune_gc(young: int = 50_000, middle: int = 50, old: int = 100) -> None:
    """Freeze what exists now (imports: never garbage) out of every pass; collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, middle, old)
