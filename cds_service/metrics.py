"""The service's Prometheus metrics: what an on-call engineer graphs and alerts on.

Every label value comes from a closed set the service defines (route templates, service ids,
card kinds, rule ids, prefetch keys, cause and outcome names), never from a request, so no
label can carry patient data and no caller can grow the number of series.

With several worker processes set `PROMETHEUS_MULTIPROC_DIR` to an empty directory writable by
all of them, before they start: each process writes its samples there and `/metrics` answers the
sum over the processes (prometheus-client's multiprocess mode). Gauges are summed over the
processes alive (`livesum`): the supervisor (cds_service.serve) removes a dead worker's samples.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from cds_service.hooks.prefetch_templates import PREFETCH
from cds_service.hooks.services import SERVICES

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "cause_of", "refusal_of"]

NONE = "-"
OTHER = "other"
#: Seconds; hook calls answer in milliseconds, fetches and slow calls in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Why a prefetch key could not be had, from the phrases of the prefetch and fetch layers.
_CAUSES = (
    ("timed out", "timeout"),
    ("could not connect", "connect_failed"),
    ("FHIR server answered", "http_status"),
    ("HTTP error", "http_error"),
    ("allowlist", "server_not_allowed"),
    ("bearer token", "bad_access_token"),
    ("no FHIR fetch configured", "no_fetch"),
    ("no fhirServer", "no_fhir_server"),
    ("next page link", "bad_next_link"),
    ("more than", "too_many_pages"),
    ("larger than", "too_large"),
    ("budget", "memory_budget"),
    ("invalid FHIR", "invalid_fhir"),
    ("not JSON", "invalid_fhir"),
    ("answer is", "invalid_fhir"),
    ("not a relative FHIR", "bad_query"),
    ("client reported an error", "client_error"),
    ("more pages", "paginated"),
    ("not in prefetch", "not_in_prefetch"),
)

#: Why a client JWT was refused, from the phrases of cds_service.auth.verifier.
_REFUSALS = (
    ("missing Authorization", "missing"),
    ("not a single Bearer", "not_bearer"),
    ("too large", "too_large"),
    ("not a compact JWS", "malformed"),
    ("malformed", "malformed"),
    ("not a trusted client", "untrusted_issuer"),
    ("iss changed", "untrusted_issuer"),
    ("kid", "unknown_key"),
    ("jku", "bad_jku"),
    ("JWK", "jwks_unavailable"),
    ("signature invalid", "bad_signature"),
    ("aud does not name", "wrong_audience"),
    ("expired", "expired"),
    ("lifetime exceeds", "lifetime_too_long"),
    ("in the future", "not_yet_valid"),
    ("exp is before iat", "bad_times"),
    ("missing or not a number", "bad_times"),
    ("replay cache", "replay_cache_unavailable"),
    ("jti was already used", "replayed"),
    ("jti missing", "no_jti"),
    ("typ", "bad_header"),
    ("critical", "bad_header"),
    ("alg", "bad_algorithm"),
)


def _first(phrases: Iterable[tuple[str, str]], text: str) -> str:
    return next((name for phrase, name in phrases if phrase in text), OTHER)


def cause_of(reason: str) -> str:
    """The cause name of a prefetch key's unavailability reason."""
    return _first(_CAUSES, reason)


def refusal_of(reason: str) -> str:
    """The refusal name of an AuthenticationError reason."""
    return _first(_REFUSALS, reason)


def _known(value: str | None, known: Iterable[str]) -> str:
    if value is None:
        return NONE
    return value if value in known else OTHER


class _Children:
    """A labelled metric's children by label values, looked up once: `labels()` takes a lock
    and checks its arguments on every call, and every answer counts several series.

    Every label value comes from a bounded set (route templates, the service's own card kinds
    and rule ids, known keys or OTHER), and the cache stops growing at CHILDREN_CACHED anyway."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self.metric.labels(*values)
            if len(self._children) < CHILDREN_CACHED:
                self._children[values] = child
        return child


#: Label-value combinations whose children `_Children` keeps, per metric.
CHILDREN_CACHED = 4096


class Metrics:
    """The metrics of one app; each app has its registry, so tests can build many apps."""

    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "cds_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "cds_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and CDS service.",
            ["route", "service"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cards = Counter(
            "cds_cards",
            "Cards answered, by CDS service, card kind and rule id (a card counts once per rule).",
            ["service", "kind", "rule"],
            registry=r,
        )
        self.unavailable = Counter(
            "cds_prefetch_unavailable",
            "Required prefetch keys that could not be had (answered 412), by key and cause.",
            ["key", "cause"],
            registry=r,
        )
        self.fetches = Counter(
            "cds_fhir_fetch_queries",
            "Fallback-fetch queries to the EHR's FHIR server, by prefetch key and outcome.",
            ["key", "outcome"],
            registry=r,
        )
        self.fetch_seconds = Histogram(
            "cds_fhir_fetch_query_duration_seconds",
            "Time of one fallback-fetch query (all its pages), by prefetch key.",
            ["key"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.jwt_refusals = Counter(
            "cds_jwt_refusals",
            "Client JWTs refused (answered 401), by reason.",
            ["reason"],
            registry=r,
        )
        self.feedback = Counter(
            "cds_feedback",
            "Card feedback received, by CDS service and outcome.",
            ["service", "outcome"],
            registry=r,
        )
        self.audit_queue = Gauge(
            "cds_audit_queue_depth",
            "Audit records answered but not yet committed to the database (write-behind), "
            "over all workers; it should stay near zero.",
            multiprocess_mode="livesum",
            registry=r,
        )

        self._requests = _Children(self.requests)
        self._request_seconds = _Children(self.request_seconds)
        self._cards = _Children(self.cards)

    def observe_request(
        self, route: str, method: str, status: int, service: str | None, seconds: float
    ) -> None:
        self._requests(route, method, str(status)).inc()
        self._request_seconds(route, _known(service, SERVICES)).observe(seconds)

    def observe_cards(self, service: str, cards: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        for kind, rules in cards:
            for rule in rules or (NONE,):
                self._cards(service, kind, rule).inc()

    def observe_unavailable(self, reasons: dict[str, str]) -> None:
        for key, reason in reasons.items():
            self.unavailable.labels(_known(key, PREFETCH), cause_of(reason)).inc()

    def observe_fetch(self, key: str, reason: str | None, seconds: float) -> None:
        """One fallback-fetch query ended: `reason` is None when it succeeded."""
        label = _known(key, PREFETCH)
        self.fetches.labels(label, "ok" if reason is None else cause_of(reason)).inc()
        self.fetch_seconds.labels(label).observe(seconds)

    def observe_refusal(self, reason: str) -> None:
        self.jwt_refusals.labels(refusal_of(reason)).inc()

    def observe_feedback(self, service: str, outcomes: Iterable[str]) -> None:
        for outcome in outcomes:
            self.feedback.labels(service, outcome).inc()

    def observe_audit_queue(self, depth: int) -> None:
        self.audit_queue.set(depth)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format (summed over workers in multiprocess mode)."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def build_router(metrics: Metrics) -> APIRouter:
    api = APIRouter(tags=["Operations"])

    @api.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def exposition() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return api
