"""How the process that reads large input starts (cds_service.offload.pool).

Kept to the standard library: the pool runs `start` before the service's modules are imported,
so the child lowers its priority before it spends its first second of CPU importing them, and
never takes the CPU from the event loops, which answer every other call and /health.
"""

from __future__ import annotations

import os
import signal
import threading
import time

#: How much lower than the workers the reading process runs (`nice` steps).
NICENESS = 5


def start(parent: int) -> None:
    """Lower the priority, end with the worker `parent`, then load what reading needs."""
    os.nice(NICENESS)
    # Ctrl-C reaches the whole process group: the worker shuts the child down itself, and an
    # interrupted child would print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The worker's pid comes from the worker: it may have ended before this child got here,
    # and SIGKILL gives it no chance to say so.
    threading.Thread(target=_end_with_parent, args=(parent,), daemon=True).start()
    # The readers' modules (what the pool sends is pickled by reference to them) and the tables.
    from cds_service.hooks import fetched_pages, large_bodies  # noqa: F401
    from cds_service.offload import relevant
    from cds_service.plan_operation import body  # noqa: F401

    relevant.warm()


def started() -> None:
    """Sent first to a new child: its answer says the child is up (`start` has run)."""


def _end_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)
