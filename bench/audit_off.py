"""The service with its audit step doing nothing: the other arm of `--audit-cost --http`.

Everything else is the service as configured (`cds_service.app:app`): the same settings,
middleware, engine, cards and store. Only `ServiceState.audit` (building the GuidanceResponse
and queueing it for the writer) is replaced, as the in-process `--audit-cost` does.

Run with: `python -m cds_service.serve --app bench.audit_off:app`.
"""

from __future__ import annotations

from bench.audit_cost import no_audit
from cds_service.app import app as service_app

service_app.state.cds.audit = no_audit
app = service_app
