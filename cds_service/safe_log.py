"""What an unexpected exception may tell the log: its type and where it was raised.

Exception messages often quote the data that caused them (`date.fromisoformat` repeats the
string it could not read, a KeyError names the key), and that data may be a patient's. The
on-call engineer needs the place, not the value, so messages and locals never reach the log.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

#: How many of the innermost frames are named.
FRAMES = 6


def where_raised(exc: BaseException) -> str:
    """`TypeError at units.py:34 in read_quantity < extract.py:290 in extract < ...`."""
    frames = traceback.extract_tb(exc.__traceback__)[-FRAMES:]
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in reversed(frames))
    return f"{type(exc).__name__} at {where}" if where else type(exc).__name__


_installed = False


def drop_tracebacks() -> None:
    """Make every log record, uvicorn's and the libraries' included, carry no traceback.

    A record logged with `exc_info` (uvicorn's "Exception in ASGI application", a library's
    `logger.exception`) gets `where_raised` appended to its message instead. Done in the record
    factory rather than on handlers, so handlers configured later (by uvicorn's log config, a
    JSON formatter) cannot bring tracebacks back. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if record.exc_info:
            exc = record.exc_info[1]
            where = where_raised(exc) if exc is not None else "exception"
            record.msg = f"{record.getMessage()} [{where}]"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        record.stack_info = None
        return record

    logging.setLogRecordFactory(factory)
