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
from collections.abc import Mapping
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


def chosen_format(env: Mapping[str, str]) -> str:
    """The format CDS_LOG_FORMAT names, for lines written before the settings are read (or when
    they cannot be): json unless it says text."""
    return "text" if env.get("CDS_LOG_FORMAT", "").strip().lower() == "text" else "json"


def line(kind: str, level: int, name: str, message: str) -> str:
    """One line in format `kind`, for what is written outside a configured logger."""
    record = logging.LogRecord(name, level, __file__, 0, message, None, None)
    return formatter(kind).format(record)


def dict_config(kind: str, level: int = logging.INFO) -> dict[str, Any]:
    """What `configure` does, as a `logging.config.dictConfig` (uvicorn's `log_config`): the
    supervisor and every worker process format their lines so from the first one."""
    formatter_class = "JsonFormatter" if kind == "json" else "TextFormatter"
    quiet = {"handlers": [], "propagate": False, "level": "CRITICAL"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": {"()": f"{__name__}.{formatter_class}"}},
        "handlers": {
            _HANDLER_NAME: {
                "class": "logging.StreamHandler",
                "formatter": "service",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": [_HANDLER_NAME], "level": logging.getLevelName(level)},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": quiet,
        },
    }


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
