"""Shared fixtures: the loopback FHIR server is available to every test module."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fhirserver.conftest import fhir_server  # noqa: E402, F401
