"""Which FHIR servers the service may call: its guard against server-side request forgery.

The ``fhirServer`` of a hook request is chosen by whoever sends the request, so calling it
blindly would let a caller make the service fetch internal URLs with its network position. The
service calls a server only when its base URL lies under an allowlisted prefix: scheme, host and
port must match exactly and the path must continue at a segment boundary (``https://ehr/fhir``
covers ``https://ehr/fhir/R4`` but not ``https://ehr/fhir-evil``). URLs that servers and clients
may read differently (user info, fragments, backslashes, dot segments, encoded slashes or dots)
are refused outright.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

ENV_VAR = "CDS_FHIR_SERVER_ALLOWLIST"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Backslash, space, "#" and every control character (C0 and DEL).
_FORBIDDEN = re.compile(r"[\\ #\x00-\x1f\x7f]")


class _Url(NamedTuple):
    scheme: str
    host: str
    port: int
    path: str  # Still percent-encoded, without a trailing slash ("" for the root).
    query: str


def parse_url(url: str) -> _Url | None:
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
    return _Url(
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


def _covers(prefix: _Url, url: _Url) -> bool:
    if (url.scheme, url.host, url.port) != (prefix.scheme, prefix.host, prefix.port):
        return False
    return url.path == prefix.path or url.path.startswith(prefix.path + "/")


def is_under(url: str, base: str) -> bool:
    """Whether ``url`` (a query string is allowed) is ``base`` or lies beneath it."""
    u, b = parse_url(url), parse_url(base)
    return u is not None and b is not None and not b.query and _covers(b, u)


@dataclass(frozen=True, init=False)
class Allowlist:
    """Base URL prefixes the fetcher may call, plus optionally any loopback server (dev only)."""

    prefixes: tuple[str, ...]
    allow_loopback: bool
    _parsed: tuple[_Url, ...]

    def __init__(self, prefixes: Iterable[str] = (), *, allow_loopback: bool = False) -> None:
        prefixes = tuple(prefixes)
        parsed = []
        for index, prefix in enumerate(prefixes):
            url = parse_url(prefix)
            if url is None or url.query:
                raise ValueError(
                    f"FHIR server allowlist entry {index + 1} must be an absolute http(s) URL "
                    "without user info, query, fragment or dot segments"
                )
            parsed.append(url)
        object.__setattr__(self, "prefixes", prefixes)
        object.__setattr__(self, "allow_loopback", allow_loopback)
        object.__setattr__(self, "_parsed", tuple(parsed))

    @classmethod
    def from_env(cls, auth_enabled: bool, value: str | None) -> Allowlist:
        """Reads ``CDS_FHIR_SERVER_ALLOWLIST`` (pass its value, None when unset): a comma list
        of base URL prefixes. With auth off (dev mode) loopback servers are allowed as well;
        with auth on, prefixes must use https unless they name a loopback host, since the EHR's
        access token travels with every request. Raises ValueError on a malformed entry, so a
        bad configuration stops the service instead of silently allowing nothing."""
        prefixes = [item.strip() for item in (value or "").split(",") if item.strip()]
        allowlist = cls(prefixes, allow_loopback=not auth_enabled)
        if auth_enabled:
            for index, url in enumerate(allowlist._parsed):
                if url.scheme != "https" and not is_loopback_host(url.host):
                    raise ValueError(
                        f"{ENV_VAR} entry {index + 1} must use https "
                        "(plain http only for loopback hosts)"
                    )
        return allowlist

    @property
    def enabled(self) -> bool:
        """False when nothing at all is allowed (fallback fetch off unless a call adds some)."""
        return bool(self._parsed) or self.allow_loopback

    def allows(self, url: str, extra: Sequence[str] = ()) -> bool:
        """Whether ``url`` may be called. ``extra`` adds prefixes for this check only (e.g. the
        authenticated client's registered ``fhir_servers``); malformed extras allow nothing."""
        target = parse_url(url)
        if target is None or target.query:  # A base URL has no query; `base/Type` would break.
            return False
        if self.allow_loopback and is_loopback_host(target.host):
            return True
        if any(_covers(prefix, target) for prefix in self._parsed):
            return True
        for item in extra:
            prefix = parse_url(item)
            if prefix is not None and not prefix.query and _covers(prefix, target):
                return True
        return False
