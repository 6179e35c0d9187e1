"""Which FHIR servers the service may call: its guard against server-side request forgery.

The ``fhirServer`` of a hook request is chosen by whoever sends the request, so calling it
blindly would let a caller make the service fetch internal URLs with its network position. The
service calls a server only when its base URL lies under an allowlisted prefix: scheme, host and
port must match exactly and the path must continue at a segment boundary (``https://ehr/fhir``
covers ``https://ehr/fhir/R4`` but not ``https://ehr/fhir-evil``). URLs that servers and clients
may read differently are refused outright (the rules are in ``cds_service.urls``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cds_service.urls import Url, covers, is_loopback_host, is_under, parse_url

__all__ = ["ENV_VAR", "Allowlist", "is_loopback_host", "is_under", "parse_url"]

ENV_VAR = "CDS_FHIR_SERVER_ALLOWLIST"


@dataclass(frozen=True, init=False)
class Allowlist:
    """Base URL prefixes the fetcher may call, plus optionally any loopback server (dev only)."""

    prefixes: tuple[str, ...]
    allow_loopback: bool
    _parsed: tuple[Url, ...]

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
                        f"entry {index + 1} must use https (plain http only for loopback hosts)"
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
        if any(covers(prefix, target) for prefix in self._parsed):
            return True
        for item in extra:
            prefix = parse_url(item)
            if prefix is not None and not prefix.query and covers(prefix, target):
                return True
        return False
