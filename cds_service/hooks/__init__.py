"""CDS Hooks 2.0: service definitions, prefetch, request models, cards and feedback."""
