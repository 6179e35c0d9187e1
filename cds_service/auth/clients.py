"""The registry of CDS clients (EHRs) we trust, loaded once from a JSON file.

The file (``CDS_CLIENTS_FILE``) is either a JSON array of client objects or an object
``{"clients": [...]}``. Each client object has:

``iss`` (string, required)
    The issuer the client puts in its JWTs. Matched exactly.
``jwks_url`` (string) *or* ``jwks`` (object) - exactly one is required
    Where the client publishes its public keys (https, or http on a loopback host for local
    testing), or the JWK set itself inline. Inline sets are never fetched; rotating them means
    editing this file and restarting. Keys must be EC P-384 (ES384) or RSA >= 2048 bits
    (RS384), each with a ``kid``. A token's ``jku`` header is honoured only if it equals or
    sits under ``jwks_url``.
``fhir_servers`` (array of strings, optional, default ``[]``)
    Base URLs of the FHIR servers this client may ask us to call (its ``fhirServer``), added
    to ``CDS_FHIR_SERVER_ALLOWLIST`` for its calls. Same URL rules as ``jwks_url``. With an
    empty list the client's calls may fetch only from the allowlisted servers.
``name``, ``description`` (strings, optional)
    For humans; ``name`` is used in log messages.

Any other field is an error, so that a typo such as ``jwks_uri`` fails loudly instead of
leaving a client without keys. See ``fhir_examples/clients.example.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cds_service.urls import covers, is_loopback_host, parse_url

from .errors import ClientsFileError
from .jwks import JwksError, VerificationKey, parse_jwks

_ALLOWED_FIELDS = frozenset({"iss", "jwks_url", "jwks", "fhir_servers", "name", "description"})


@dataclass(frozen=True, slots=True)
class TrustedClient:
    """One CDS client we accept requests from, with what it is allowed to make us do."""

    iss: str
    jwks_url: str | None
    inline_keys: Mapping[str, VerificationKey] | None
    fhir_servers: tuple[str, ...]
    name: str | None = None

    @property
    def label(self) -> str:
        """How logs refer to this client: from configuration, never from a token."""
        return self.name or self.iss

    def allows_jku(self, jku: str) -> bool:
        """Whether a token's ``jku`` may be fetched for this client."""
        return self.jwks_url is not None and url_is_under(jku, self.jwks_url)


class ClientRegistry:
    """Trusted clients by ``iss``; immutable once loaded so lookups need no locking."""

    def __init__(self, clients: list[TrustedClient]) -> None:
        by_iss: dict[str, TrustedClient] = {}
        for client in clients:
            if client.iss in by_iss:
                raise ClientsFileError(f"duplicate iss {client.iss!r}")
            by_iss[client.iss] = client
        self._by_iss = by_iss

    def get(self, iss: str) -> TrustedClient | None:
        return self._by_iss.get(iss)

    def __iter__(self) -> Iterator[TrustedClient]:
        return iter(self._by_iss.values())

    def __len__(self) -> int:
        return len(self._by_iss)


def url_is_under(url: str, base: str) -> bool:
    """Whether ``url`` equals ``base`` or lies beneath it, by the rules of ``cds_service.urls``;
    a query is accepted only when it equals the base's (a ``jku`` is a key set, not a search)."""
    u, b = parse_url(url), parse_url(base)
    return u is not None and b is not None and u.query == b.query and covers(b, u)


def load_clients(path: str | Path) -> ClientRegistry:
    """Read and validate the trusted-clients file; any problem raises ``ClientsFileError``.

    Validation is complete at startup so that a bad file stops the service instead of
    surfacing as unexplained 401s later.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientsFileError(f"{path}: cannot read trusted-clients file: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientsFileError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    try:
        return parse_clients(document)
    except ClientsFileError as exc:
        raise ClientsFileError(f"{path}: {exc}") from None


def parse_clients(document: Any) -> ClientRegistry:
    """Validate an already-decoded clients document (see the module docstring for the shape)."""
    if isinstance(document, dict):
        extra = set(document) - {"clients"}
        if "clients" not in document or extra:
            raise ClientsFileError(
                'top level must be an array of clients or an object {"clients": [...]}'
            )
        document = document["clients"]
    if not isinstance(document, list):
        raise ClientsFileError(
            'top level must be an array of clients or an object {"clients": [...]}'
        )
    clients = [_parse_client(index, entry) for index, entry in enumerate(document)]
    seen: dict[str, int] = {}
    for index, client in enumerate(clients):
        if client.iss in seen:
            raise ClientsFileError(
                f"clients[{index}]: duplicate iss {client.iss!r} (also clients[{seen[client.iss]}])"
            )
        seen[client.iss] = index
    return ClientRegistry(clients)


def _parse_client(index: int, entry: Any) -> TrustedClient:
    where = f"clients[{index}]"
    if not isinstance(entry, dict):
        raise ClientsFileError(f"{where}: must be a JSON object")
    unknown = sorted(set(entry) - _ALLOWED_FIELDS)
    if unknown:
        raise ClientsFileError(
            f"{where}: unknown field(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_ALLOWED_FIELDS))}"
        )
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss.strip():
        raise ClientsFileError(f"{where}: 'iss' is required and must be a non-empty string")
    where = f"{where} (iss {iss!r})"

    for field in ("name", "description"):
        if field in entry and not isinstance(entry[field], str):
            raise ClientsFileError(f"{where}: {field!r} must be a string")

    has_url, has_inline = "jwks_url" in entry, "jwks" in entry
    if has_url == has_inline:
        raise ClientsFileError(f"{where}: exactly one of 'jwks_url' or 'jwks' is required")
    jwks_url: str | None = None
    inline_keys: dict[str, VerificationKey] | None = None
    if has_url:
        jwks_url = _check_url(entry["jwks_url"], f"{where}: 'jwks_url'")
    else:
        try:
            inline_keys = parse_jwks(entry["jwks"], strict=True)
        except JwksError as exc:
            raise ClientsFileError(f"{where}: 'jwks': {exc}") from None
        if not inline_keys:
            raise ClientsFileError(f"{where}: 'jwks' contains no keys")

    servers = entry.get("fhir_servers", [])
    if not isinstance(servers, list):
        raise ClientsFileError(f"{where}: 'fhir_servers' must be an array of URL strings")
    fhir_servers = tuple(
        _check_url(url, f"{where}: 'fhir_servers[{i}]'") for i, url in enumerate(servers)
    )
    return TrustedClient(
        iss=iss,
        jwks_url=jwks_url,
        inline_keys=inline_keys,
        fhir_servers=fhir_servers,
        name=entry.get("name"),
    )


def _check_url(value: Any, what: str) -> str:
    parsed = parse_url(value)
    if parsed is None:
        raise ClientsFileError(
            f"{what} must be an absolute http(s) URL without user info, fragment or dot segments"
        )
    if parsed.scheme != "https" and not is_loopback_host(parsed.host):
        raise ClientsFileError(f"{what} must use https (plain http only for loopback hosts)")
    return str(value)
