"""FHIR output: the regimen and findings as FHIR R4 resources (plain JSON-ready dicts)."""
