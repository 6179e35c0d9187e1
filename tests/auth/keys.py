"""Test helpers for signing CDS client JWTs with real keys and serving JWK sets over loopback.

Reusable from other test modules (``from tests.auth.keys import ...`` or relative imports)
to sign end-to-end requests the way an EHR would.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_OMIT = object()


@dataclass(frozen=True)
class SigningKey:
    """A client's private key with the ``kid`` and ``alg`` it publishes the public half under."""

    private_key: PrivateKey
    kid: str
    alg: str

    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}


def new_ec_key(kid: str | None = None, curve: ec.EllipticCurve | None = None) -> SigningKey:
    """A fresh P-384 key (ES384), or another curve for negative tests (alg follows the curve)."""
    curve = curve or ec.SECP384R1()
    alg = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[curve.name]
    return SigningKey(ec.generate_private_key(curve), kid or f"ec-{uuid.uuid4().hex[:8]}", alg)


def new_rsa_key(kid: str | None = None, bits: int = 2048) -> SigningKey:
    """A fresh RSA key for RS384."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return SigningKey(private, kid or f"rsa-{uuid.uuid4().hex[:8]}", "RS384")


def jwks_of(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.public_jwk() for key in keys]}


def make_token(
    key: SigningKey,
    kid: str | None,
    iss: str | None,
    aud: str | list[str] | None,
    *,
    lifetime_s: float = 300,
    alg: str | None = None,
    jku: str | None = None,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """Sign a CDS Hooks client JWT.

    Defaults produce a valid token: ``iat`` now, ``exp`` = ``iat`` + ``lifetime_s``, a random
    ``jti``, header ``typ: JWT``. Keyword claims override or add claims; ``None`` omits a claim
    (``jti=None``, or ``iss``/``aud`` given as None). ``kid=None`` leaves ``kid`` out.
    """
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "iat": now,
        "exp": now + int(lifetime_s),
        "jti": uuid.uuid4().hex,
    }
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    header: dict[str, Any] = {"typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    if jku is not None:
        header["jku"] = jku
    header.update(headers or {})
    return jwt.encode(payload, key.private_key, algorithm=alg or key.alg, headers=header)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """Assemble a JWS by hand, for tokens no sane library would produce (alg none, ...)."""
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(payload).encode())
    return f"{head}.{body}.{b64url(signature)}"


@dataclass
class JwksServer:
    """A loopback HTTP server publishing a JWK set that tests can change while it runs.

    Every GET is recorded in ``hits`` (paths), so tests can count fetches or prove a URL was
    never requested. Use as a context manager; ``url`` is the JWKS URL.
    """

    keys: list[SigningKey] = field(default_factory=list)
    path: str = "/.well-known/jwks.json"
    hits: list[str] = field(default_factory=list)
    status: int = 200
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def set_keys(self, *keys: SigningKey) -> None:
        with self._lock:
            self.keys = list(keys)

    def hit_count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for hit in self.hits if path is None or hit == path)

    def _document(self, request_path: str) -> tuple[int, bytes]:
        with self._lock:
            self.hits.append(request_path)
            if request_path.split("?", 1)[0] != self.path:
                return 404, b'{"error": "not found"}'
            return self.status, json.dumps(jwks_of(*self.keys)).encode()

    def start(self) -> JwksServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                status, body = owner._document(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
