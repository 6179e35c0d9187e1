"""FHIR: the regimen and findings as R4 resources, strict validation, and search answers."""
