"""Exceptions raised by the auth package.

Two kinds of failure are kept apart on purpose: a rejected request (the client's fault, answered
with 401) and a broken configuration (the operator's fault, which must stop the service from
starting rather than silently trusting nobody or everybody).
"""

from __future__ import annotations


class AuthenticationError(Exception):
    """The bearer token did not prove that a trusted CDS client sent this request.

    ``reason`` is meant for the server log only and never echoes the token or values taken from
    it; callers answer 401 with a generic body so that a probing client learns nothing about
    which check failed.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class ClientsFileError(ValueError):
    """The trusted-clients file is unreadable or invalid.

    The message names the file, the entry and the field, so the operator can fix it at once.
    """
