"""Vitamin B12 deficiency decision support: CDS Hooks 2.0 service and FHIR plan operation."""

__version__ = "0.1.0"
