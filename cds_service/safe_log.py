"""What an unexpected exception may tell the log: its type and where it was raised.

Exception messages often quote the data that caused them (`date.fromisoformat` repeats the
string it could not read, a KeyError names the key), and that data may be a patient's. The
on-call engineer needs the place, not the value, so messages and locals never reach the log.
"""

from __future__ import annotations

import traceback
from pathlib import Path

#: How many of the innermost frames are named.
FRAMES = 6


def where_raised(exc: BaseException) -> str:
    """`TypeError at units.py:34 in read_quantity < extract.py:290 in extract < ...`."""
    frames = traceback.extract_tb(exc.__traceback__)[-FRAMES:]
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in reversed(frames))
    return f"{type(exc).__name__} at {where}" if where else type(exc).__name__
