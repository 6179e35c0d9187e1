"""Verifying the bearer JWT a CDS client sends with each request (CDS Hooks 2.0, "Trusting CDS
Clients").

Nothing read from the token is trusted before its signature checks out. The unverified
``iss`` only selects which configured client's keys to try; the algorithm is never chosen by
the token but must be one we allow *and* the one the selected key is bound to; ``jku`` only
narrows the key source within the client's configured allowlist. Failure reasons are fixed
texts plus configuration values, never token contents, because tokens are credentials and
logs travel further than one would like.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any, Final

import jwt
from jwt.exceptions import InvalidSignatureError, PyJWTError
from jwt.types import Options

from .clients import ClientRegistry, TrustedClient
from .errors import AuthenticationError
from .jwks import ALLOWED_ALGORITHMS, JwksCache, VerificationKey
from .replay import ReplayCache

logger = logging.getLogger("cds_service.auth")

#: Far above any legitimate CDS Hooks token, low enough to bound the parsing work per request.
MAX_TOKEN_CHARS: Final = 8192
MAX_JTI_CHARS: Final = 256

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_NO_CLAIM_CHECKS: Final[Options] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


class JwtVerifier:
    """Decides whether a request comes from a trusted CDS client.

    Time-based claims are checked here against ``clock`` rather than by PyJWT, so that the
    leeway, the lifetime cap and tests all use the same notion of "now". The replay cache is
    consulted last, so a token that fails any other check never burns its ``jti``.
    """

    def __init__(
        self,
        clients: ClientRegistry,
        jwks: JwksCache,
        replay: ReplayCache,
        *,
        leeway_s: float = 30.0,
        max_lifetime_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clients = clients
        self._jwks = jwks
        self._replay = replay
        self._leeway_s = leeway_s
        self._max_lifetime_s = max_lifetime_s
        self._clock = clock

    async def unready_clients(self) -> list[str]:
        """Why each client whose keys are published at a URL cannot be verified yet (readiness):
        its JWK set was never fetched and cannot be fetched now."""
        problems = []
        for client in self._clients:
            if client.jwks_url is None:
                continue
            reason = await self._jwks.ensure(client.jwks_url)
            if reason is not None:
                problems.append(f"JWKS of client {client.label!r}: {reason}")
        return problems

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def verify(self, authorization: str | None, audience: str) -> TrustedClient:
        """Check an ``Authorization`` header value and return the client that signed it.

        ``audience`` is the public URL of the endpoint being called (``CDS_PUBLIC_BASE_URL``
        plus request path), which the token's ``aud`` must name. Raises
        ``AuthenticationError``; each rejection is logged once at INFO on
        ``cds_service.auth``, so callers need not log the reason again.
        """
        try:
            return await self._verify(authorization, audience)
        except AuthenticationError as exc:
            logger.info("rejected CDS client request: %s", exc.reason)
            raise

    async def _verify(self, authorization: str | None, audience: str) -> TrustedClient:
        token = _bearer_token(authorization)
        header = _unverified_header(token)
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise AuthenticationError(
                f"token algorithm not allowed (only {', '.join(ALLOWED_ALGORITHMS)})"
            )
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise AuthenticationError("token header typ is not JWT")
        if "crit" in header:
            raise AuthenticationError("token header has critical extensions we do not support")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationError("token header has no kid")
        jku = header.get("jku")
        if jku is not None and not isinstance(jku, str):
            raise AuthenticationError("token header jku is not a string")

        client = self._select_client(token)
        key = await self._resolve_key(client, kid, jku)
        if key.alg != alg:
            raise AuthenticationError(
                f"token algorithm does not match the key's ({key.alg}) for client {client.label!r}"
            )
        claims = _verified_claims(token, key, client)
        expires_at = self._check_claims(claims, client, audience)
        await self._check_replay(client, claims["jti"], expires_at)
        return client

    def _select_client(self, token: str) -> TrustedClient:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except PyJWTError:
            raise AuthenticationError("malformed token payload") from None
        iss = unverified.get("iss")
        client = self._clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise AuthenticationError("token issuer is not a trusted client")
        return client

    async def _resolve_key(
        self, client: TrustedClient, kid: str, jku: str | None
    ) -> VerificationKey:
        if client.inline_keys is not None:
            # The configured keys decide; a `jku` (the CDS Hooks sandbox always sends one) is
            # never fetched for such a client, so it cannot widen the keys a token is tried with.
            key = client.inline_keys.get(kid)
        else:
            assert client.jwks_url is not None  # guaranteed by the clients file validation
            if jku is not None and not client.allows_jku(jku):
                raise AuthenticationError(
                    f"token jku is outside {client.jwks_url!r} configured for client "
                    f"{client.label!r}"
                )
            key = await self._jwks.get_key(jku or client.jwks_url, kid, rate_key=client.jwks_url)
        if key is None:
            raise AuthenticationError(f"token kid is unknown for client {client.label!r}")
        return key

    def _check_claims(self, claims: dict[str, Any], client: TrustedClient, audience: str) -> float:
        """Return the moment after which the token is dead, for the replay cache."""
        who = f"client {client.label!r}"
        if claims.get("iss") != client.iss:
            raise AuthenticationError(f"token iss changed after client selection ({who})")
        aud = claims.get("aud")
        if not (aud == audience or (isinstance(aud, list) and audience in aud)):
            raise AuthenticationError(f"token aud does not name {audience!r} ({who})")

        now = self._clock()
        exp = _numeric_claim(claims, "exp", who)
        iat = _numeric_claim(claims, "iat", who)
        if now > exp + self._leeway_s:
            raise AuthenticationError(f"token expired ({who})")
        if iat > now + self._leeway_s:
            raise AuthenticationError(f"token iat is in the future ({who})")
        if exp < iat:
            raise AuthenticationError(f"token exp is before iat ({who})")
        if exp - iat > self._max_lifetime_s:
            raise AuthenticationError(f"token lifetime exceeds {self._max_lifetime_s:g} s ({who})")
        if "nbf" in claims and _numeric_claim(claims, "nbf", who) > now + self._leeway_s:
            raise AuthenticationError(f"token nbf is in the future ({who})")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
            raise AuthenticationError(f"token jti missing or invalid ({who})")
        return exp + self._leeway_s

    async def _check_replay(self, client: TrustedClient, jti: str, expires_at: float) -> None:
        try:
            first_use = await self._replay.check_and_store(client.iss, jti, expires_at)
        except Exception:
            logger.exception("replay cache failed; rejecting request")
            raise AuthenticationError(
                f"replay cache unavailable (client {client.label!r})"
            ) from None
        if not first_use:
            raise AuthenticationError(f"token jti was already used (client {client.label!r})")


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError("missing Authorization header")
    parts = authorization.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise AuthenticationError("Authorization header is not a single Bearer credential")
    token = parts[1]
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthenticationError("token too large")
    if not _COMPACT_JWS.fullmatch(token):
        raise AuthenticationError("token is not a compact JWS")
    return token


def _unverified_header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except PyJWTError:
        raise AuthenticationError("malformed token header") from None


def _verified_claims(token: str, key: VerificationKey, client: TrustedClient) -> dict[str, Any]:
    try:
        return jwt.decode(token, key=key.key, algorithms=[key.alg], options=_NO_CLAIM_CHECKS)
    except InvalidSignatureError:
        raise AuthenticationError(f"token signature invalid (client {client.label!r})") from None
    except PyJWTError:
        raise AuthenticationError(f"malformed token (client {client.label!r})") from None


def _numeric_claim(claims: dict[str, Any], name: str, who: str) -> float:
    value = claims.get(name)
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an int beyond float range stays NaN
            number = float(value)
    if not math.isfinite(number):
        raise AuthenticationError(f"token {name} missing or not a number ({who})")
    return number
