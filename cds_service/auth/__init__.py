"""Authentication of CDS clients (CDS Hooks 2.0 "Trusting CDS Clients").

Typical wiring in the app layer::

    verifier = JwtVerifier(load_clients(os.environ["CDS_CLIENTS_FILE"]), JwksCache(),
                           DatabaseReplayCache(database))
    client = await verifier.verify(request.headers.get("authorization"),
                                   audience=public_base_url + request.url.path)

and map ``AuthenticationError`` to 401 with ``WWW-Authenticate: Bearer`` and no details.
This package does not import FastAPI so it can be tested and reused on its own.
"""

from .clients import ClientRegistry, TrustedClient, load_clients, parse_clients, url_is_under
from .errors import AuthenticationError, ClientsFileError
from .jwks import ALLOWED_ALGORITHMS, JwksCache, VerificationKey
from .replay import ReplayCache
from .verifier import JwtVerifier

__all__ = [
    "ALLOWED_ALGORITHMS",
    "AuthenticationError",
    "ClientRegistry",
    "ClientsFileError",
    "JwksCache",
    "JwtVerifier",
    "ReplayCache",
    "TrustedClient",
    "VerificationKey",
    "load_clients",
    "parse_clients",
    "url_is_under",
]
