"""How the serving process uses the garbage collector.

Everything loaded at start-up (the protocol, code indexes, FHIR model classes) lives as long as
the process, so it is moved out of the collector's reach: full collections then stay short on
the request path. A hook call allocates thousands of short-lived containers (parsed JSON, models,
cards) that reference counting frees; at the default first threshold (700) the collector would
walk them several times per call for nothing.
"""

from __future__ import annotations

import gc

#: Allocations between two collections of the youngest generation.
FIRST_THRESHOLD = 20_000


def settle() -> None:
    """Call once everything long-lived is loaded, before serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(FIRST_THRESHOLD, *gc.get_threshold()[1:])
