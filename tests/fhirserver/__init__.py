"""A real-HTTP FHIR R4 server for integration tests; see ``runner.FhirTestServer``."""

from .app import MODES, ErrorMode, FhirState, RecordedRequest, create_app, load_bundles
from .runner import FhirTestServer

__all__ = [
    "MODES",
    "ErrorMode",
    "FhirState",
    "FhirTestServer",
    "RecordedRequest",
    "create_app",
    "load_bundles",
]
