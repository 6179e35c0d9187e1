"""Service configuration, read once from `CDS_*` environment variables.

A frozen dataclass rather than a settings framework: there are few settings, and a bad value
must stop the service at start-up with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cds_service.urls import is_loopback_host, parse_url

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
LOG_FORMATS = ("json", "text")
#: The operator token guards the audit trail: long enough that guessing it is hopeless.
MIN_OPERATOR_TOKEN = 32


class SettingsError(ValueError):
    """A `CDS_*` variable holds a value the service cannot run with."""


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be on/off (or true/false), not {raw!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (the first by default), case-insensitive."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return choices[0]
    value = raw.strip().lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return value


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum:g}")
    return value


@dataclass(frozen=True)
class Settings:
    #: CDS_AUTH: verify the CDS client's JWT on every POST and on $apply (off: local development).
    auth: bool = True
    #: CDS_PUBLIC_BASE_URL: the URL clients call us at; the JWT audience is this + the path.
    public_base_url: str = ""
    #: CDS_CLIENTS_FILE: JSON file of trusted CDS clients (issuers, keys, FHIR servers).
    clients_file: str | None = None
    #: CDS_DISCOVERY_REQUIRES_AUTH: also require a client JWT on GET /cds-services.
    discovery_requires_auth: bool = False
    #: CDS_MAX_BODY_BYTES: larger request bodies get 413.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: CDS_CORS_ORIGINS: comma-separated allowed origins, `*` for any.
    cors_origins: tuple[str, ...] = field(default=("*",))
    #: CDS_PROFILE: protocol profile (standard, fda-label, nice-ng239); empty = protocol default.
    profile: str | None = None
    #: CDS_FHIR_TIMEOUT_S: timeout of one fallback-fetch query (all its pages).
    fhir_timeout_s: float = 2.0
    #: CDS_FHIR_DEADLINE_S: overall deadline for all fallback-fetch queries of one call.
    fhir_deadline_s: float = 4.0
    #: CDS_FHIR_MAX_PAGES: search result pages followed per query (more is "unavailable").
    fhir_max_pages: int = 10
    #: CDS_FHIR_SERVER_ALLOWLIST: comma-separated FHIR base URL prefixes we may call, besides a
    #: trusted client's own `fhir_servers` (with CDS_AUTH=off, loopback servers as well).
    fhir_server_allowlist: str | None = None
    #: CDS_FHIR_BASE_URL: the FHIR server $apply reads records from when no `data` is given.
    fhir_base_url: str | None = None
    #: CDS_FHIR_ACCESS_TOKEN: bearer token for CDS_FHIR_BASE_URL (never logged).
    fhir_access_token: str | None = field(default=None, repr=False)
    #: CDS_JWKS_TIMEOUT_S: timeout for fetching a client's JWK set.
    jwks_timeout_s: float = 2.0
    #: CDS_PREVIEW: serve the card preview page /preview (dev and operator use).
    preview: bool = False
    #: CDS_JWKS_REFETCH_INTERVAL_S: least time between two refetches of a client's JWK set on
    #: an unknown `kid` (a failed fetch is retried sooner, backing off up to this interval).
    jwks_refetch_interval_s: float = 5.0
    #: CDS_JWT_MAX_LIFETIME_S: longest accepted `exp - iat` of a client JWT (the replay window).
    jwt_max_lifetime_s: float = 3600.0
    #: CDS_MAX_DRAFT_ORDERS: draft orders one order-select / order-sign call may carry.
    max_draft_orders: int = 200
    #: CDS_MAX_ENTRIES_PER_KEY: resources one prefetch key (or its fetched answer) may hold.
    max_entries_per_key: int = 10_000
    #: CDS_MAX_RESOURCES: resources one call may carry in all (prefetch, draft orders, $apply data).
    max_resources: int = 20_000
    #: CDS_READ_PROCESSES: processes (per worker) that read hook requests over 256 KiB, so
    #: their parsing never holds the event loop; 0 reads them in a thread of the worker.
    read_processes: int = 1
    #: CDS_FHIR_MAX_BYTES_PER_CALL: bytes the fallback fetch may buffer for one call.
    fhir_max_bytes_per_call: int = 16 * 1024 * 1024
    #: CDS_FHIR_MAX_BYTES_TOTAL: bytes the fallback fetch may hold for all calls of the process.
    fhir_max_bytes_total: int = 64 * 1024 * 1024
    #: CDS_LOG_FORMAT: `json` (one object per line, for log shippers) or `text` (for people).
    log_format: str = "json"
    #: CDS_METRICS: serve the Prometheus metrics at GET /metrics on the service's port.
    metrics: bool = True
    #: CDS_DOCS: serve the OpenAPI description (/openapi.json) and its viewer (/docs).
    docs: bool = True
    #: CDS_DATA_DIR: directory of the embedded SQLite database (when CDS_DATABASE_URL is unset).
    data_dir: str = "var"
    #: CDS_DATABASE_URL: PostgreSQL (postgresql://user:pass@host/db) shared by replicas.
    database_url: str | None = field(default=None, repr=False)
    #: CDS_DB_MIGRATE: apply the database migrations at start-up (off: `b12-cds db upgrade`).
    migrate_on_start: bool = True
    #: CDS_AUDIT_RETENTION_DAYS: audit records and feedback older than this are purged.
    audit_retention_days: int = 3650
    #: CDS_OPERATOR_TOKEN: bearer token of the operator API (audit trail, analytics).
    operator_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        origins = tuple(o.strip() for o in env.get("CDS_CORS_ORIGINS", "*").split(",") if o.strip())
        settings = cls(
            auth=_flag(env, "CDS_AUTH", True),
            public_base_url=env.get("CDS_PUBLIC_BASE_URL", "").strip().rstrip("/"),
            clients_file=env.get("CDS_CLIENTS_FILE", "").strip() or None,
            discovery_requires_auth=_flag(env, "CDS_DISCOVERY_REQUIRES_AUTH", False),
            max_body_bytes=int(
                _number(env, "CDS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1024)
            ),
            cors_origins=origins,
            profile=env.get("CDS_PROFILE", "").strip() or None,
            fhir_timeout_s=_number(env, "CDS_FHIR_TIMEOUT_S", 2.0, minimum=0.1),
            fhir_deadline_s=_number(env, "CDS_FHIR_DEADLINE_S", 4.0, minimum=0.1),
            fhir_max_pages=int(_number(env, "CDS_FHIR_MAX_PAGES", 10, minimum=1)),
            fhir_server_allowlist=env.get("CDS_FHIR_SERVER_ALLOWLIST", "").strip() or None,
            fhir_base_url=env.get("CDS_FHIR_BASE_URL", "").strip() or None,
            fhir_access_token=env.get("CDS_FHIR_ACCESS_TOKEN", "").strip() or None,
            jwks_timeout_s=_number(env, "CDS_JWKS_TIMEOUT_S", 2.0, minimum=0.1),
            preview=_flag(env, "CDS_PREVIEW", False),
            jwks_refetch_interval_s=_number(env, "CDS_JWKS_REFETCH_INTERVAL_S", 5.0, minimum=0.1),
            jwt_max_lifetime_s=_number(env, "CDS_JWT_MAX_LIFETIME_S", 3600.0, minimum=1),
            max_draft_orders=int(_number(env, "CDS_MAX_DRAFT_ORDERS", 200, minimum=1)),
            max_entries_per_key=int(_number(env, "CDS_MAX_ENTRIES_PER_KEY", 10_000, minimum=1)),
            max_resources=int(_number(env, "CDS_MAX_RESOURCES", 20_000, minimum=1)),
            read_processes=int(_number(env, "CDS_READ_PROCESSES", 1, minimum=0)),
            fhir_max_bytes_per_call=int(
                _number(env, "CDS_FHIR_MAX_BYTES_PER_CALL", 16 * 1024 * 1024, minimum=1024)
            ),
            fhir_max_bytes_total=int(
                _number(env, "CDS_FHIR_MAX_BYTES_TOTAL", 64 * 1024 * 1024, minimum=1024)
            ),
            log_format=_choice(env, "CDS_LOG_FORMAT", LOG_FORMATS),
            metrics=_flag(env, "CDS_METRICS", True),
            docs=_flag(env, "CDS_DOCS", True),
            data_dir=env.get("CDS_DATA_DIR", "").strip() or "var",
            database_url=env.get("CDS_DATABASE_URL", "").strip() or None,
            migrate_on_start=_flag(env, "CDS_DB_MIGRATE", True),
            audit_retention_days=int(_number(env, "CDS_AUDIT_RETENTION_DAYS", 3650, minimum=1)),
            operator_token=env.get("CDS_OPERATOR_TOKEN", "").strip() or None,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise SettingsError when the combination cannot work (auth on without its config)."""
        if self.auth:
            if not self.public_base_url:
                raise SettingsError("CDS_PUBLIC_BASE_URL is required when CDS_AUTH is on")
            if not self.public_base_url.startswith(("https://", "http://")):
                raise SettingsError("CDS_PUBLIC_BASE_URL must be an http(s) URL")
            if not self.clients_file:
                raise SettingsError("CDS_CLIENTS_FILE is required when CDS_AUTH is on")
        if self.operator_token is not None and len(self.operator_token) < MIN_OPERATOR_TOKEN:
            raise SettingsError(
                f"CDS_OPERATOR_TOKEN must be at least {MIN_OPERATOR_TOKEN} characters"
            )
        if self.max_body_bytes < 1024:
            raise SettingsError("CDS_MAX_BODY_BYTES must be at least 1024")
        if self.fhir_max_bytes_per_call > self.fhir_max_bytes_total:
            raise SettingsError(
                "CDS_FHIR_MAX_BYTES_PER_CALL must not exceed CDS_FHIR_MAX_BYTES_TOTAL"
            )
        if self.fhir_base_url is not None:
            # $apply sends the access token there: the allowlist's URL rules apply.
            base = parse_url(self.fhir_base_url)
            if base is None or base.query:
                raise SettingsError(
                    "CDS_FHIR_BASE_URL must be an absolute http(s) URL without user info, "
                    "query, fragment or dot segments"
                )
            if self.auth and base.scheme != "https" and not is_loopback_host(base.host):
                raise SettingsError(
                    "CDS_FHIR_BASE_URL must use https when CDS_AUTH is on (http only for loopback)"
                )
