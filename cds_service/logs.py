"""The log format: one JSON object per line (CDS_LOG_FORMAT=json) or readable text (text).

Every line names its time, level, logger and the id of the request it belongs to. The
service's own loggers and uvicorn's error logger share the format. uvicorn's access logger is
silenced: its line quotes the full URL, whose query string can name a patient
(`$apply?subject=Patient/...`); the service's `request` line (cds_service.middleware.access_log)
is the access log, with the route template in place of the path.

Records may carry structured fields in `extra={"fields": {...}}`; they become keys of the JSON
object (or `key=value` pairs in text).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from cds_service.middleware.request_id import current_request_id

FORMATS = ("json", "text")
#: Longest message and field value written; longer ones are cut with an ellipsis.
MAX_CHARS = 2000
_HANDLER_NAME = "cds_service"


def _capped(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_CHARS:
        return value[:MAX_CHARS] + "..."
    return value


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return {k: _capped(v) for k, v in fields.items()} if isinstance(fields, dict) else {}


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _capped(record.getMessage()),
        }
        request_id = current_request_id()
        if request_id is not None:
            line["request_id"] = request_id
        line.update(_fields(record))
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: a traceback's text can quote the data that caused it.
            line["exception"] = record.exc_info[0].__name__
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_time(record), record.levelname, record.name, _capped(record.getMessage())]
        request_id = current_request_id()
        if request_id is not None:
            parts.append(f"request_id={request_id}")
        for key, value in _fields(record).items():
            text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
            parts.append(f"{key}={text}")
        if record.exc_info and record.exc_info[0] is not None:
            parts.append(f"exception={record.exc_info[0].__name__}")
        return " ".join(parts)


def formatter(kind: str) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else TextFormatter()


def configure(kind: str, level: int = logging.INFO) -> None:
    """Send the service's and uvicorn's logs to stderr in format `kind` (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter(kind))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
