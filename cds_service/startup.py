"""Start-up failures the operator can fix: one line on stderr naming the variable or file, exit 2.

A traceback puts the useful line last, after dozens of frames of uvicorn and importlib; the
operator needs only which setting or which file to fix, and why.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import yaml

from cds_service import logs
from cds_service.auth.errors import ClientsFileError
from cds_service.protocol import ProtocolError, UnknownProfileError
from cds_service.settings import SettingsError

T = TypeVar("T")
EXIT_CODE = 2
#: What an operator's setting or file can cause; anything else is a defect and keeps its trace.
OPERATOR_ERRORS = (SettingsError, ClientsFileError, ProtocolError, UnknownProfileError)


def fail(message: str) -> NoReturn:
    """The one line, in the log format CDS_LOG_FORMAT names (the settings may be what failed)."""
    text = f"b12-cds: cannot start: {message}"
    kind = logs.chosen_format(os.environ)
    print(
        text if kind == "text" else logs.line(kind, logging.ERROR, __name__, text),
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(EXIT_CODE)


def or_exit(build: Callable[[], T]) -> T:
    """`build()`, or the one-line message and exit 2 when a setting or a table is wrong."""
    with exit_on_operator_error():
        return build()


@contextmanager
def exit_on_operator_error() -> Iterator[None]:
    """Turn what an operator's setting or file can cause into the one line and exit 2."""
    try:
        yield
    except OPERATOR_ERRORS as exc:
        fail(str(exc))
    except yaml.YAMLError as exc:
        fail(f"a protocol table is not valid YAML: {type(exc).__name__}")
    except OSError as exc:
        fail(f"{exc.filename or 'a file'}: {exc.strerror or type(exc).__name__}")
