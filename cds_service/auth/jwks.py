"""Public keys of CDS clients: parsing JWK sets and fetching them over HTTPS with a cache.

Keys are cached per URL so that verifying a request normally costs no network round trip.
A token naming an unknown ``kid`` triggers a refetch, so a client can rotate keys without us
restarting; that refetch is rate limited, because ``kid`` comes from an unauthenticated token
and would otherwise let anyone make us hammer the client's key server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ec import SECP384R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import PyJWTError

logger = logging.getLogger("cds_service.auth")

#: The only signature algorithms CDS Hooks 2.0 allows clients to use.
ALLOWED_ALGORITHMS: Final = ("ES384", "RS384")

MIN_RSA_BITS: Final = 2048

PublicKey = EllipticCurvePublicKey | RSAPublicKey


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key bound to the single algorithm it may verify, so alg confusion is impossible."""

    kid: str
    alg: str
    key: PublicKey


class JwksError(ValueError):
    """A JWK or JWK set cannot be used; raised only when parsing strictly (configuration)."""


def parse_jwk(jwk: Any) -> VerificationKey:
    """Turn one JWK into a key usable for ES384 or RS384, or explain why it cannot be.

    Anything outside what CDS Hooks needs (other curves, symmetric keys, encryption keys,
    keys declaring another ``alg``) is refused, because accepting it could only widen the set
    of tokens we would honour.
    """
    if not isinstance(jwk, dict):
        raise JwksError("a key is not a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise JwksError("a key has no 'kid' (a non-empty string is required)")
    where = f"key {kid!r}"
    if "d" in jwk:
        raise JwksError(f"{where} contains private key material ('d'); publish public keys only")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise JwksError(f"{where} has use={use!r}; only signature keys ('sig') are usable")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise JwksError(f"{where} has key_ops without 'verify'")

    kty = jwk.get("kty")
    key: PublicKey
    if kty == "EC":
        alg = "ES384"
        if jwk.get("crv") != "P-384":
            raise JwksError(f"{where} is an EC key on {jwk.get('crv')!r}; only P-384 is allowed")
        parsed = _from_jwk(ECAlgorithm.from_jwk, jwk, where)
        if not isinstance(parsed, EllipticCurvePublicKey) or not isinstance(
            parsed.curve, SECP384R1
        ):
            raise JwksError(f"{where} is not a P-384 public key")
        key = parsed
    elif kty == "RSA":
        alg = "RS384"
        parsed = _from_jwk(RSAAlgorithm.from_jwk, jwk, where)
        if not isinstance(parsed, RSAPublicKey):
            raise JwksError(f"{where} is not an RSA public key")
        if parsed.key_size < MIN_RSA_BITS:
            raise JwksError(f"{where} has {parsed.key_size} bits; at least {MIN_RSA_BITS} needed")
        key = parsed
    else:
        raise JwksError(f"{where} has kty={kty!r}; only 'EC' (P-384) and 'RSA' are allowed")

    declared = jwk.get("alg")
    if declared is not None and declared != alg:
        raise JwksError(f"{where} declares alg={declared!r}; only {alg} fits this key")
    return VerificationKey(kid=kid, alg=alg, key=key)


def _from_jwk(loader: Callable[[Any], Any], jwk: dict[str, Any], where: str) -> Any:
    try:
        return loader(jwk)
    except (PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise JwksError(f"{where} is not a valid JWK: {exc}") from None


def parse_jwks(document: Any, *, strict: bool) -> dict[str, VerificationKey]:
    """Index a JWK set by ``kid``.

    ``strict`` is for keys written into our own configuration, where any oddity is an operator
    mistake worth refusing to start over. Fetched sets are parsed leniently: a client may
    legitimately publish keys we cannot use (say an ES256 key for another relying party), and
    one such key must not lock out its usable ones.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("a JWK set must be a JSON object with a 'keys' array")
    keys: dict[str, VerificationKey] = {}
    for index, jwk in enumerate(document["keys"]):
        try:
            key = parse_jwk(jwk)
        except JwksError as exc:
            if strict:
                raise JwksError(f"keys[{index}]: {exc}") from None
            logger.warning("ignoring unusable key keys[%d] in a fetched JWK set: %s", index, exc)
            continue
        if key.kid in keys:
            # Two keys under one kid make the choice of key ambiguous; refuse both.
            if strict:
                raise JwksError(f"keys[{index}]: duplicate kid {key.kid!r}")
            logger.warning("ignoring duplicate kid in a fetched JWK set (keys[%d])", index)
            continue
        keys[key.kid] = key
    return keys


#: Least time between two fetches a readiness probe starts for a URL that has no keys yet.
READY_RETRY_S = 2.0


@dataclass(slots=True)
class _Entry:
    keys: dict[str, VerificationKey]
    fetched_at: float


class JwksCache:
    """Fetches and caches JWK sets by URL.

    A fetch happens when a URL was never fetched, when its keys are older than ``max_age_s``
    (so a key the client removed stops being honoured) or when a requested ``kid`` is missing
    (so a rotated-in key is found). Fetches share a budget of one per ``refetch_interval_s``
    per *rate key* - the issuer's configured JWKS URL - so that tokens with random ``kid`` or
    ``jku`` values cannot turn us into a request amplifier. Concurrent callers share one
    in-flight fetch. A failed fetch keeps the previous keys.

    Without an injected ``http_client`` every fetch uses a short-lived ``aiohttp.ClientSession``
    (the fallback fetch's client library): fetches are rare, and this keeps the cache free of
    event-loop bound state, so it needs no shutdown hook. Redirects are never followed, so a
    fetch cannot leave the allowlisted URL; proxies and credentials from the environment are not
    used.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 2.0,
        refetch_interval_s: float = 5.0,
        retry_after_failure_s: float = 1.0,
        max_age_s: float = 300.0,
        max_urls: int = 256,
        max_bytes: int = 256 * 1024,
        http_client: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout_s = timeout_s
        self._refetch_interval_s = refetch_interval_s
        self._retry_after_failure_s = min(retry_after_failure_s, refetch_interval_s)
        self._max_age_s = max_age_s
        self._max_urls = max_urls
        self._max_bytes = max_bytes
        self._http = http_client
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        #: Per rate key: when the next fetch may start, and how many fetches failed in a row.
        self._next_allowed: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._last_error: dict[str, str] = {}

    async def get_key(
        self, url: str, kid: str, *, rate_key: str | None = None
    ) -> VerificationKey | None:
        """Return the key ``kid`` published at ``url``, fetching if allowed; None if unknown.

        ``url`` must already be allowlisted by the caller; this class fetches whatever it is
        given. ``rate_key`` defaults to ``url``.
        """
        now = self._clock()
        entry = self._entries.get(url)
        stale = entry is None or now - entry.fetched_at >= self._max_age_s
        missing = entry is None or kid not in entry.keys
        if (stale or missing) and (
            url in self._inflight or self._take_budget(rate_key or url, now)
        ):
            await self._shared_fetch(url, rate_key or url)
            entry = self._entries.get(url)
        if entry is None:
            return None
        self._entries.move_to_end(url)
        return entry.keys.get(kid)

    async def ensure(self, url: str) -> str | None:
        """None once keys from ``url`` were fetched at least once, else why not (for readiness).

        Fetches when there are none yet, at most once per ``READY_RETRY_S`` under a budget of
        its own, so a probe neither delays a request's fetch nor can be used to flood ``url``.
        """
        if url not in self._entries and (
            url in self._inflight or self._take_budget(f"ready:{url}", self._clock(), READY_RETRY_S)
        ):
            await self._shared_fetch(url, None)
        if url in self._entries:
            return None
        return self._last_error.get(url, "not fetched yet")

    def _take_budget(self, rate_key: str, now: float, interval: float | None = None) -> bool:
        if now < self._next_allowed.get(rate_key, -math.inf):
            return False
        self._next_allowed[rate_key] = now + (
            self._refetch_interval_s if interval is None else interval
        )
        return True

    def _settle_budget(self, rate_key: str | None, started: float, ok: bool) -> None:
        """After a failed fetch the next one may come sooner, backing off: 1, 2, 4 s ... up to
        the refetch interval, so a JWKS outage ends for us within seconds of its end. (A
        readiness fetch, without a rate key, keeps its own fixed retry.)"""
        if rate_key is None:
            return
        if ok:
            self._failures.pop(rate_key, None)
            return
        failures = self._failures.get(rate_key, 0) + 1
        self._failures[rate_key] = failures
        wait = min(self._refetch_interval_s, self._retry_after_failure_s * 2 ** (failures - 1))
        self._next_allowed[rate_key] = started + wait

    async def _shared_fetch(self, url: str, rate_key: str | None) -> None:
        task = self._inflight.get(url)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.get_running_loop().create_task(self._fetch_and_store(url, rate_key))
            self._inflight[url] = task
            task.add_done_callback(lambda done: self._forget(url, done))
        # shield: one cancelled request must not abort the fetch other requests wait on.
        await asyncio.shield(task)

    def _forget(self, url: str, task: asyncio.Task[None]) -> None:
        if self._inflight.get(url) is task:
            del self._inflight[url]

    async def _fetch_and_store(self, url: str, rate_key: str | None) -> None:
        started = self._clock()
        try:
            document = await self._fetch(url)
            keys = parse_jwks(document, strict=False)
        except (aiohttp.ClientError, TimeoutError, JwksError, ValueError) as exc:
            self._settle_budget(rate_key, started, ok=False)
            logger.warning("JWKS fetch from %s failed: %s", url, exc)
            self._last_error[url] = f"fetch failed ({type(exc).__name__}: {exc})"[:300]
            return
        self._settle_budget(rate_key, started, ok=True)
        self._entries[url] = _Entry(keys=keys, fetched_at=self._clock())
        self._entries.move_to_end(url)
        while len(self._entries) > self._max_urls:
            self._entries.popitem(last=False)
        logger.info("fetched JWKS from %s (%d usable keys)", url, len(keys))

    async def _fetch(self, url: str) -> Any:
        if self._http is not None:
            return await self._fetch_with(self._http, url)
        async with aiohttp.ClientSession(trust_env=False) as client:
            return await self._fetch_with(client, url)

    async def _fetch_with(self, client: aiohttp.ClientSession, url: str) -> Any:
        headers = {"Accept": "application/jwk-set+json, application/json"}
        async with client.get(
            url,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            allow_redirects=False,
        ) as response:
            if response.status != 200:
                raise ValueError(f"HTTP status {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > self._max_bytes:
                    raise ValueError(f"response larger than {self._max_bytes} bytes")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"response is not JSON: {exc}") from None
