"""Strict reading of the URLs the service is told to call: FHIR servers and JWK set URLs.

Both come from outside (a hook request's ``fhirServer``, a JWT's ``jku``) and are checked
against configured prefixes, so both are read by the same rules: absolute http(s) only; user
info, fragments, backslashes, spaces, control characters, dot segments and encoded slashes or
dots are refused outright, since servers and clients disagree on how to read them; a prefix
covers a URL when scheme, host and port match exactly and the path continues at a segment
boundary (``https://ehr/fhir`` covers ``https://ehr/fhir/R4``, not ``https://ehr/fhir-evil``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Backslash, space, "#" and every control character (C0 and DEL).
_FORBIDDEN = re.compile(r"[\\ #\x00-\x1f\x7f]")


class Url(NamedTuple):
    scheme: str
    host: str
    port: int
    path: str  # Still percent-encoded, without a trailing slash ("" for the root).
    query: str


def parse_url(url: str) -> Url | None:
    """Splits an absolute http(s) URL, or returns None if it is one to refuse."""
    if not isinstance(url, str) or _FORBIDDEN.search(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    lowered = parts.path.lower()
    if "%2f" in lowered or "%2e" in lowered or "%5c" in lowered:
        return None
    if any(segment in (".", "..") for segment in unquote(parts.path).split("/")):
        return None
    return Url(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port if port is not None else _DEFAULT_PORTS[parts.scheme],
        path=parts.path.rstrip("/"),
        query=parts.query,
    )


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def covers(prefix: Url, url: Url) -> bool:
    """Same scheme, host and port, and the path is the prefix's or continues it at a "/"."""
    if (url.scheme, url.host, url.port) != (prefix.scheme, prefix.host, prefix.port):
        return False
    return url.path == prefix.path or url.path.startswith(prefix.path + "/")


def is_under(url: str, base: str) -> bool:
    """Whether ``url`` (a query string is allowed) is ``base`` or lies beneath it."""
    u, b = parse_url(url), parse_url(base)
    return u is not None and b is not None and not b.query and covers(b, u)
