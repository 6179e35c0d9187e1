"""Counts and times every HTTP request, and what its route recorded, in the app's metrics."""

from __future__ import annotations

from cds_service.metrics import Metrics
from cds_service.middleware.observe import FinishedCall, Observer


def metrics_observer(metrics: Metrics) -> Observer:
    """What a finished call adds to `metrics` (an observer of ObserveMiddleware)."""

    def observe(call: FinishedCall) -> None:
        record = call.record
        metrics.observe_request(call.route, call.method, call.status, record.service, call.seconds)
        if record.service is not None and record.cards is not None:
            metrics.observe_cards(record.service, record.cards)
        if call.status == 412 and record.unavailable:
            metrics.observe_unavailable(record.unavailable)
        if record.auth_refusal is not None:
            metrics.observe_refusal(record.auth_refusal)
        if record.service is not None and record.feedback:
            metrics.observe_feedback(record.service, record.feedback)

    return observe
