"""The cyclic garbage collector set for a long-running server process.

Two facts about this server's heap make the interpreter's defaults a poor fit. The compiled R4
definitions are about a million objects that live as long as the process: left in the
collector's generations, every full collection walks them, so start-up moves them out
(``gc.freeze``). And ingest makes objects in bursts that almost all die by reference count
within the request (parsed entries, index rows, pickled answers of the parser processes): at
the default young-generation threshold of 700 allocations each 73-entry bundle set off one or
two young collections in the server and in a parser process, each scanning what the bundles in
flight still held, and every tenth of those a middle one. At 20,000 the server spent about 0.1 s
instead of 0.4 s collecting per 72,750 resources ingested, and a parser process 0.03 s instead
of 0.34 s (``bench/run.py``'s ingest of 1,000 patients); garbage in cycles waits a little
longer, bounded by the same count.
"""

from __future__ import annotations

import gc

#: Allocations (less deallocations) of tracked objects before a young collection.
YOUNG_THRESHOLD = 20_000


def settle() -> None:
    """Collect once, move what survives out of the collector's reach, and raise the young threshold."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
